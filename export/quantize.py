"""An 8-bit copy of the sketch trunk (stem + MBConv blocks[:13]), for query latency: `python -m export.quantize`.

Every sketch query runs this trunk before a backend's small head; it is most of a query's time.
EfficientNet-Lite was designed to quantize (ReLU6, no squeeze-excite), so static int8 quantization
(QDQ, per-channel weights, activation ranges calibrated on training-split sketches of every source)
keeps the features while cutting the trunk's time. Photos keep the float trunk: they are encoded
once per gallery, where time matters less than fidelity. Whether a backend serves the int8 trunk is
its model JSON's choice (`sketch_model`), made only where the benchmark's held-out scores allow.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from sbir_core.config import MODELS_DIR, data_dir
from sbir_core.data.preprocess import sketch_input
from sbir_core.data.splits import QUICKDRAW_STROKE_TRAIN_ROWS
from sbir_core.train.features import PREPROCESS, sketch_image, sketch_records, stroke_records, tuberlin_records

from .trunk import file_name

END = 13


def int8_file_name(end: int = END) -> str:
    return file_name(end).replace(".onnx", "_int8.onnx")


def calibration_inputs(per_source: int = 100, seed: int = 0) -> np.ndarray:
    """(N, 3, S, S) model inputs: `per_source` training-split sketches each of Sketchy, TU-Berlin and
    Quick, Draw! strokes drawn as on the canvas (never a held-out one), chosen at random with `seed`."""
    root = data_dir()
    rng = np.random.default_rng(seed)
    sources = [[r for r in sketch_records(root) if r.split == "train"],
               [r for r in tuberlin_records(root) if r.split == "train"],
               stroke_records(root, QUICKDRAW_STROKE_TRAIN_ROWS, "train")]
    picked = [recs[i] for recs in sources for i in rng.choice(len(recs), min(per_source, len(recs)), replace=False)]
    return np.stack([sketch_input(sketch_image(r.path), PREPROCESS) for r in picked]).astype(np.float32)


def quantize(src: Path, dst: Path, inputs: np.ndarray, method: str = "Percentile") -> None:
    """Static int8 quantization of `src` (QDQ, per-channel int8 weights, uint8 activations; activation
    ranges over `inputs`) written to `dst`."""
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)
    name = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter(inputs)

        def get_next(self) -> dict | None:
            x = next(self.rows, None)
            return None if x is None else {name: x[None]}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre))
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod[method])


def compare(src: Path, dst: Path, inputs: np.ndarray, runs: int = 50) -> dict[str, float]:
    """Cosine similarity of the float and int8 trunks' features on `inputs`, and their median
    milliseconds per single input on one thread."""
    import onnxruntime as ort

    def session(p: Path):
        o = ort.SessionOptions()
        o.intra_op_num_threads, o.inter_op_num_threads = 1, 1
        return ort.InferenceSession(str(p), o, providers=["CPUExecutionProvider"])

    a, b = session(src), session(dst)
    name = a.get_inputs()[0].name
    fa = np.concatenate([a.run(None, {name: x[None]})[0] for x in inputs]).reshape(len(inputs), -1)
    fb = np.concatenate([b.run(None, {name: x[None]})[0] for x in inputs]).reshape(len(inputs), -1)
    cos = (fa * fb).sum(1) / (np.linalg.norm(fa, axis=1) * np.linalg.norm(fb, axis=1) + 1e-12)
    ms = {}
    for label, s in (("float_ms", a), ("int8_ms", b)):
        times = []
        for i in range(runs + 5):
            t0 = time.perf_counter()
            s.run(None, {name: inputs[i % len(inputs)][None]})
            times.append(1e3 * (time.perf_counter() - t0))
        ms[label] = float(np.median(times[5:]))
    return {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), **ms}


def held_out_scores(int8_file: str, backends: tuple[str, ...] = ("classifier", "triplet")) -> dict[str, dict]:
    """The benchmark's held-out sets (Sketchy, TU-Berlin, doodles -> bundled gallery) scored by each
    backend as shipped and with its sketch trunk swapped for the int8 one: what quantizing costs."""
    from sbir_core.backends import load_backend
    from sbir_core.backends.onnx_model import OnnxModel
    from sbir_core.heldout import demo_gallery, quickdraw_canvas, score_set, sketchy_heldout, tuberlin_heldout
    gallery, _ = demo_gallery()
    sets = [sketchy_heldout(), tuberlin_heldout(), quickdraw_canvas(gallery)]
    out = {}
    for name in backends:
        for variant in ("float", "int8"):
            backend = load_backend(name, threads=1)
            if variant == "int8":
                backend.sketch_model.models[0] = OnnxModel.load(MODELS_DIR / int8_file, threads=1)
            for s in sets:
                r = score_set(backend, s)
                out[f"{name} {variant} {s.name}"] = {k: r[k] for k in ("mAP@all", "P@20", "hit@4", "sketch_top1") if k in r}
                print(f"{name} {variant} {s.name}: {out[f'{name} {variant} {s.name}']}", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-source", type=int, default=100, help="calibration sketches per source")
    ap.add_argument("--method", default="Percentile", choices=("MinMax", "Percentile", "Entropy"),
                    help="how activation ranges are calibrated")
    ap.add_argument("--evaluate", action="store_true", help="then score the held-out sets with both trunks")
    args = ap.parse_args(argv)
    src, dst = MODELS_DIR / file_name(END), MODELS_DIR / int8_file_name(END)
    inputs = calibration_inputs(args.per_source)
    quantize(src, dst, inputs, args.method)
    check = calibration_inputs(30, seed=1)
    print(f"wrote {dst.name} ({dst.stat().st_size / 2**20:.1f} MB) from {len(inputs)} calibration sketches; "
          f"on {len(check)} others: {compare(src, dst, check)}")
    if args.evaluate:
        held_out_scores(dst.name)


if __name__ == "__main__":
    main()
