"""Photos of paper sheets sent from a phone's browser (``POST /api/photos``): checked the way
``mnistp4 segment`` will read them, stored in the raw scans folder beside a sidecar naming the
writer, and answered with what the photo shows of the sheet's corner markers, so the writer can
take it again while the sheet is still on the desk.

A photo is stored as sent (``photo_<writer>_<UTC time>_<random>.<ext>``, the extension of the
format it is, whatever the file was called): ``segment`` reads its EXIF orientation, HEIC or
AVIF, and decodes a 12 MP JPEG at half size, as for a photo copied into the folder by hand.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

from mnistp4.errors import InputError
from mnistp4.stages.web.collect import UploadError, check_writer, publish

log = logging.getLogger(__name__)

#: the file's format (Pillow's name) -> the extension it is stored under
EXTENSIONS = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "HEIF": ".heic",
    "AVIF": ".avif",
    "TIFF": ".tif",
    "WEBP": ".webp",
}


def save_photo(raw_dir: Path, writer: str, data: bytes, filename: str, layouts: dict) -> dict:
    """Check and store one photo of a sheet; returns what was written and what it shows.

    ``filename`` (what the phone called it) names the photo in messages and tells its format where
    the content does not; the stored name is new. ``layouts``: the known sheet layouts, to count
    the markers of one."""
    from mnistp4.stages.sheets import sheet_image
    from mnistp4.stages.sheets.segment_template import layout_from_markers, marker_points, read_markers, shrink

    check_writer(writer)
    name = "photo" + Path(filename or "").suffix.lower()
    try:
        info = sheet_image.probe(data, name)
    except InputError as e:
        raise _unusable(e, name) from None
    ext = EXTENSIONS.get(info.format)
    if ext is None:
        raise UploadError(f"send the photo as JPEG, PNG or HEIC (this is {info.format or 'another format'})", 415)
    try:
        grey = sheet_image.decode_sheet(data, name)
    except InputError as e:
        raise _unusable(e, name) from None
    try:
        _, markers = read_markers(shrink(grey), layouts)
    except InputError as e:  # the back of a sheet, its front showing through
        raise _unusable(e, name) from None
    layout = layout_from_markers(markers, layouts)
    seen = len(marker_points(layout, markers)[0]) if layout is not None else 0
    warning = None
    if seen < 4:
        warning = (
            f"{seen} of the 4 corner squares of a sheet are visible: if this is a printed sheet, take "
            f"the photo again with the whole sheet and its four corner squares in view"
            if seen
            else "no corner squares of a printed sheet are visible: fine for a page of digits in rows; "
            "for a printed sheet, take the photo again with its four corner squares in view"
        )
    now = datetime.now(timezone.utc).replace(microsecond=0)
    note = f"photo sent from the collection page (mnistp4 serve): writer {writer}, {now.isoformat()}"
    stem = publish(raw_dir, f"photo_{writer}", now, writer, note, data, ext)
    log.info("saved photo %s (%d of 4 corner markers seen)", stem, seen)
    return {
        "id": stem,
        "writer": writer,
        "time": now.isoformat(),
        "image": f"{stem}{ext}",
        "sidecar": f"{stem}.json",
        "size": [int(grey.shape[1]), int(grey.shape[0])],
        "layout": layout.name if layout is not None else None,
        "markers": seen,
        "warning": warning,
    }


def _unusable(e: InputError, name: str) -> UploadError:
    """What ``segment`` would say of the photo, as the upload's answer (415 for no picture at all)."""
    reason = str(e).removeprefix(f"{name}: ")
    return UploadError(f"the photo cannot be used: {reason}", 415 if "not an image" in reason else 400)
