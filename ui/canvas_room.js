export default function(component) {
  const { parentElement, setStateValue } = component;
  const w = window;
  if (!w.__sketchsearchHideToolbar) {
    const hide = () => {
      for (const host of document.querySelectorAll('[data-testid="stBidiComponentIsolated"]')) {
        const root = host.shadowRoot;
        if (root && !root.querySelector('style[data-sketchsearch]')) {   // before the canvas renders in it, too
          const css = document.createElement('style');
          css.setAttribute('data-sketchsearch', '');
          css.textContent = '.dc-toolbar{display:none !important}.dc-scroll{overflow:hidden !important}';
          root.appendChild(css);
        }
      }
    };
    let queued = false;
    new MutationObserver(() => {
      if (!queued) { queued = true; requestAnimationFrame(() => { queued = false; hide(); }); }
    }).observe(document.body, {childList: true, subtree: true});
    setInterval(hide, 300);            // a shadow root attached after its host was inserted: no mutation to see
    w.__sketchsearchHideToolbar = hide;
    // (3) The canvas sends a finished stroke only after a 200 ms debounce. On the pen lift, press its own
    // (hidden) "send" button instead: the stroke leaves at once (the pending debounced send is cancelled).
    let penRoot = null;
    document.addEventListener('pointerdown', (e) => {
      const c = (e.composedPath ? e.composedPath() : []).find(n => n.classList && n.classList.contains('upper-canvas'));
      penRoot = c ? c.getRootNode() : null;
    }, true);
    const lift = () => {
      const root = penRoot;
      penRoot = null;
      if (!root || !root.querySelector) return;
      setTimeout(() => {               // after the canvas has recorded the stroke (a microtask of its pointerup)
        const send = root.querySelector('button[aria-label="Update the app with this drawing"]');
        if (send) send.click();
      }, 0);
    };
    document.addEventListener('pointerup', lift, true);
    document.addEventListener('pointercancel', lift, true);
  }
  w.__sketchsearchHideToolbar();
  const el = parentElement.host || parentElement;
  if (el.__sketchsearchRoom) return;
  let last = null;
  const report = () => {
    const width = Math.floor(el.getBoundingClientRect().width);
    const main = document.querySelector('[data-testid="stMain"]');
    const top = Math.round(el.getBoundingClientRect().top + (main ? main.scrollTop : 0) + w.scrollY);
    const room = {w: width, vw: w.innerWidth, vh: w.innerHeight, top: top};
    if (width <= 0) return;
    if (last && Math.abs(last.w - room.w) < 6 && Math.abs(last.vh - room.vh) < 40) return;
    last = room;
    setStateValue('room', room);
  };
  el.__sketchsearchRoom = new ResizeObserver(() => requestAnimationFrame(report));
  el.__sketchsearchRoom.observe(el);
  w.addEventListener('resize', () => requestAnimationFrame(report));
  report();
}
