"""Phone photos as cameras write them: a plain JPEG, an HDR JPEG with a gain map after the photo
(what Pillow calls MPO), a 48 MP JPEG and a HEIC: decoding and segmenting time per sheet, and the result.

    MNISTP4_MNIST_DIR=... MNISTP4_SEMEION_DIR=... python bench/bench_decode.py [--seeds 801 802] [--rounds 3]
    python bench/with_checkout.py COMMIT bench/bench_decode.py --tag code-COMMIT   # the code of another commit

Each 12 MP photo of ``bench/realistic_sheets.py`` (every photo condition x ``--seeds``) is decoded
once and saved again by Pillow at quality 90 three ways: a plain JPEG; the same JPEG followed by a
quarter-size gain map (an HDR phone photo's layout: Android's "Ultra HDR", recent iPhones'
JPEGs); the photo enlarged to 48 MP (8064 pixels long, a 48 MP phone's full resolution); and,
with the optional ``pillow-heif``, a HEIC (an iPhone's default format).
Each file is decoded (``decode_sheet``) and segmented (``segment_auto``) in this process, one
thread, ``--rounds`` times; the table gives the median CPU milliseconds of each step per sheet,
the decoded size, and how many of the sheets' boxes come out with the same flags as from the plain
JPEG, and with the same 28x28 too (a photo decoded at another size gives slightly other 28x28s).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent


def variants(photo: bytes) -> dict[str, bytes]:
    """The plain, HDR (gain map after the photo) and 48 MP files of one photo."""
    from PIL import Image

    image = Image.open(io.BytesIO(photo)).convert("RGB")
    plain, hdr, big = io.BytesIO(), io.BytesIO(), io.BytesIO()
    image.save(plain, "JPEG", quality=90)
    gain_map = Image.new("L", (image.width // 4, image.height // 4), 128)
    image.save(hdr, "MPO", quality=90, save_all=True, append_images=[gain_map])
    scale = 8064 / max(image.size)
    image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC).save(
        big, "JPEG", quality=90
    )
    out = {"plain": plain.getvalue(), "hdr (gain map)": hdr.getvalue(), "48 MP": big.getvalue()}
    try:
        import pillow_heif
    except ImportError:  # the optional HEIC reader (pip install "mnistp4[heic]")
        return out
    pillow_heif.register_heif_opener()
    heic = io.BytesIO()
    # x265's fastest preset: the decoding is measured, not a phone's encoder
    image.save(heic, format="HEIF", quality=80, enc_params={"preset": "ultrafast"})
    out["HEIC"] = heic.getvalue()
    return out


def main(argv=None) -> int:
    import benchmeta
    import realistic_sheets as rs

    from mnistp4.stages.sheets.layout import default_layouts
    from mnistp4.stages.sheets.segment_template import segment_auto
    from mnistp4.stages.sheets.sheet_image import decode_sheet

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0].rstrip(","))
    parser.add_argument("--seeds", type=int, nargs="+", default=[801, 802])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)
    out_dir = benchmeta.start("bench_decode", tag=args.tag)
    benchmeta.tee_stdout(out_dir)
    cv2.setNumThreads(1)
    options = {"layouts": {lay.name: lay for lay in default_layouts()}, "rows": "0123456789"}
    hand = rs.Handwriting.from_env()
    files = []
    for condition in (c for c in rs.CONDITIONS if c.startswith("photo")):
        for seed in args.seeds:
            payload, _ = rs.encode(rs.make_sheet(condition, seed, hand))
            files.append((f"{condition}-s{seed}", variants(payload)))
    kinds = list(files[0][1])
    times: dict = {k: {"decode": [], "segment": []} for k in kinds}
    sizes: dict = {k: set() for k in kinds}
    same = dict.fromkeys(kinds, 0)
    same_flags = dict.fromkeys(kinds, 0)
    boxes = 0
    segment_auto(decode_sheet(files[0][1]["plain"], "warm.jpg"), options=options)  # first-use costs
    for r in range(args.rounds):
        for name, by_kind in files:
            reference = None
            for kind in kinds:
                t0 = time.process_time()
                grey = decode_sheet(by_kind[kind], f"{name}.jpg")
                t1 = time.process_time()
                digits = segment_auto(grey, options=options)
                t2 = time.process_time()
                times[kind]["decode"].append(t1 - t0)
                times[kind]["segment"].append(t2 - t1)
                sizes[kind].add(f"{grey.shape[1]}x{grey.shape[0]}")
                if r == 0:
                    got = {(d.row, d.col): (tuple(d.flags), d.image.tobytes()) for d in digits}
                    if kind == "plain":
                        reference = got
                        boxes += len(got)
                    same[kind] += sum(got.get(k) == v for k, v in (reference or {}).items())
                    same_flags[kind] += sum(got.get(k, ((),))[0] == v[0] for k, v in (reference or {}).items())
    print(f"{len(files)} photos ({', '.join(str(s) for s in args.seeds)} x the photo conditions), {args.rounds} rounds")
    print("| file | decoded size | decode ms/sheet | segment ms/sheet | boxes: same flags | same flags and 28x28 |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for kind in kinds:
        dec, seg = (1000 * float(np.median(times[kind][s])) for s in ("decode", "segment"))
        sized = ", ".join(sorted(sizes[kind]))
        print(f"| {kind} | {sized} | {dec:.0f} | {seg:.0f} | {same_flags[kind]} / {boxes} | {same[kind]} / {boxes} |")
        summary[kind] = dict(
            decode_ms=dec, segment_ms=seg, same_flags=same_flags[kind], same_boxes=same[kind], boxes=boxes
        )
    (out_dir / "bench_decode.json").write_text(json.dumps({"photos": len(files), "summary": summary}, indent=1))
    benchmeta.finish(out_dir, **{k.split()[0]: v for k, v in summary.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
