"""Reading sheet files: bytes -> one greyscale uint8 page, and a folder -> its sheet files, with a
one-line reason for everything that cannot be a sheet (shared helper of ``batch``).

What a viewer shows is what gets segmented: transparency is composited on white paper (a tablet
export whose ink is only in the alpha channel), 16-bit data is scaled by its real bit depth (12-bit
camera data in a 16-bit PNG is not "blank"), each page of a multi-page TIFF is a sheet, EXIF
orientation is applied, and big JPEG photos are decoded at half size (the DCT does the shrinking:
the segmenters work at ~5 px/mm, a 12 MP photo of an A4 sheet has ~10).
"""

from __future__ import annotations

import io
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mnistp4.errors import InputError

log = logging.getLogger(__name__)

#: files read as sheets: .jfif and .jpe are JPEGs as some browsers and Windows save them; AVIF is
#: a phone format like HEIC; a GIF (older scanning and fax software) is read by its first frame;
#: PNM is what SANE's ``scanimage`` writes by default on Linux; JPEG 2000 comes from document scanners
SUFFIXES = {
    ".png",
    ".jpg",
    ".jpeg",
    ".jfif",
    ".jpe",
    ".tif",
    ".tiff",
    ".bmp",
    ".webp",
    ".gif",
    ".heic",
    ".heif",
    ".avif",
    ".pdf",
    ".pnm",
    ".pgm",
    ".ppm",
    ".pbm",
    ".jp2",
    ".j2k",
}
#: files that hold a picture in a form not read here: reported with what to do instead of skipped
#: without a word (a user who photographed in RAW mode or zipped the scans would see no sheets)
_RAW = "a camera RAW photo; export it as JPEG, or photograph in JPEG or HEIC mode"
_ARCHIVE = "an archive; unpack its sheets into the folder"
NOT_READ = {
    **dict.fromkeys((".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".orf", ".rw2", ".raf", ".srw", ".pef"), _RAW),
    **dict.fromkeys((".zip", ".7z", ".rar", ".tar", ".tgz", ".gz"), _ARCHIVE),
    **dict.fromkeys((".psd", ".xcf", ".kra"), "an image editor's document; export the sheet as PNG"),
    **dict.fromkeys((".svg", ".svgz", ".eps"), "a vector drawing; export it as PNG or PDF"),
    ".jxl": "a JPEG XL image; export it as JPEG or PNG",
}
#: bigger files or images are refused (a 600 dpi A3 colour scan is ~70 MP)
MAX_BYTES = 200 * 1024 * 1024
MAX_PIXELS = 100_000_000
MIN_SIDE = 200
#: a JPEG is decoded at 1/2, 1/4 or 1/8 of its size (libjpeg scales while it decodes: the whole
#: image is never in memory) as long as its longer side stays at least this: a 12 MP phone photo
#: at half size, 48 MP at a quarter, 200 MP at an eighth, all about 2000-4000 pixels long; a HEIC
#: photo is shrunk the same way after decoding (what the sheet's segmentation is tuned for)
DECODED_MIN_SIDE = 2000
#: JPEGs up to this are read (decoded smaller, as above); the largest phone photos are 200 MP
MAX_JPEG_PIXELS = 400_000_000
_REDUCED_GREY = {
    1: cv2.IMREAD_GRAYSCALE,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}
#: a page whose grey levels span less than this is blank
BLANK_RANGE = 16
#: PDF pages (a scanner's usual output) are rendered at this resolution: above the canonical page
#: the template segmenter warps to (127 dpi), below the 300 dpi of most scans (no gain past 2x)
PDF_DPI = 200


#: Pillow's names of the formats phones save photos in besides JPEG: decoded through Pillow (which
#: turns them as a viewer does), then shrunk like a JPEG of their size
PHONE_FORMATS = ("HEIF", "AVIF")


@dataclass
class ImageInfo:
    width: int
    height: int
    mode: str
    format: str
    pages: int
    turned: bool = False  # an EXIF orientation other than "upright"


def _check_size(data: bytes, name: str) -> None:
    if not data:
        raise InputError(f"{name}: empty file")
    if len(data) > MAX_BYTES:
        raise InputError(
            f"{name}: {len(data) / 2**20:.0f} MB is enormous for a sheet (limit "
            f"{MAX_BYTES / 2**20:.0f} MB); scan at 300 dpi or less"
        )


def probe(data: bytes, name: str) -> ImageInfo:
    """The header of an image file (no pixels decoded); :class:`InputError` when it is none."""
    _check_size(data, name)
    from PIL import Image, UnidentifiedImageError

    kind = _heif_kind(data)  # by content: a phone's HEIC photo may come named .jpg
    if kind == "heic" or (kind is None and name.lower().endswith((".heic", ".heif"))):
        _heif_opener(name)
    if kind == "avif" or (kind is None and name.lower().endswith(".avif")):
        _avif_reader(name)
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # true sizes of bombs too: checked below
    try:
        with Image.open(io.BytesIO(data)) as im:
            info = ImageInfo(im.width, im.height, im.mode, im.format or "", getattr(im, "n_frames", 1))
            # OpenCV turns JPEGs itself, not PNG/WebP/TIFF; Pillow decodes a whole PNG to look for
            # EXIF after its pixels, so a PNG without an eXIf chunk is upright without asking
            if info.format not in ("JPEG", "MPO") and (info.format != "PNG" or _png_has_exif(data)):
                info.turned = im.getexif().get(0x0112, 1) not in (0, 1)
            if info.format == "MPO":  # a camera JPEG with a gain map, a depth map or a second view after
                info.format, info.pages = "JPEG", 1  # the photo (HDR phone photos): one sheet, a JPEG
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise InputError(
            f"{name}: not an image OpenCV or Pillow can read (corrupt or another format); "
            f"export it as PNG, JPEG or TIFF"
        ) from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    pixels = info.width * info.height
    if pixels > (MAX_JPEG_PIXELS if info.format == "JPEG" else MAX_PIXELS):
        raise InputError(
            f"{name}: {info.width}x{info.height} pixels ({pixels / 1e6:.0f} MP) is enormous (limit "
            f"{MAX_JPEG_PIXELS // 10**6} MP for a JPEG, {MAX_PIXELS // 10**6} MP otherwise); scan at 300 dpi "
            f"or less, or photograph at 12-50 MP"
        )
    return info


def decode_scale(width: int, height: int) -> int:
    """The factor (1, 2, 4 or 8) a photo of this size is decoded smaller by (:data:`DECODED_MIN_SIDE`)."""
    return next((f for f in (8, 4, 2) if max(width, height) >= f * DECODED_MIN_SIDE), 1)


def _png_has_exif(data: bytes) -> bool:
    """Whether a PNG file has an eXIf chunk: its chunk headers walked, the pixels not read."""
    pos = 8
    while pos + 8 <= len(data):
        kind = data[pos + 4 : pos + 8]
        if kind == b"eXIf":
            return True
        if kind == b"IEND":
            return False
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")
    return False


def decode_sheet(data: bytes, name: str, page: int = 0) -> np.ndarray:
    """File bytes -> greyscale uint8 page (``page``: 0-based page of a multi-page TIFF or a PDF)."""
    if data[:5] == b"%PDF-":
        _check_size(data, name)
        return _checked(_decode_pdf(data, name, page), name)
    info = probe(data, name)
    if page >= info.pages:
        raise InputError(f"{name}: has {info.pages} page(s), page {page + 1} was asked for")
    if info.pages > 1 or info.format in PHONE_FORMATS or info.turned:
        grey = _decode_pil(data, page)
    elif info.format == "JPEG":  # 8-bit, no alpha; OpenCV applies the EXIF orientation
        flag = _REDUCED_GREY[decode_scale(info.width, info.height)]
        grey = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    else:  # keep alpha and all bits (IMREAD_GRAYSCALE drops both)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        grey = None if image is None else _to_grey8(image)
    if grey is None:
        raise InputError(f"{name}: the image data is corrupt or truncated; export or copy it again")
    if info.format in PHONE_FORMATS:  # a camera photo: to the size a JPEG of its size is decoded at
        grey = _shrunk(grey, decode_scale(grey.shape[1], grey.shape[0]))
    return _checked(grey, name)


def _shrunk(grey: np.ndarray, factor: int) -> np.ndarray:
    """``grey`` 1/``factor`` as wide and high (rounded up, as libjpeg does), each pixel the mean of
    the ones it covers."""
    if factor == 1:
        return grey
    h, w = grey.shape
    return cv2.resize(grey, (-(-w // factor), -(-h // factor)), interpolation=cv2.INTER_AREA)


class BlankPage(InputError):
    """A page with nothing on it to read (no ink, no markers): in a multi-page scan, the back of a
    sheet (nothing to cut); as a file of its own, a failure with its reason."""


def _checked(grey: np.ndarray, name: str) -> np.ndarray:
    """``grey`` unless it is too small or blank to be a sheet."""
    if min(grey.shape) < MIN_SIDE:
        raise InputError(
            f"{name}: {grey.shape[1]}x{grey.shape[0]} pixels is too small for a sheet "
            f"(at least {MIN_SIDE} pixels a side)"
        )
    low, high, _, _ = cv2.minMaxLoc(grey)  # one pass (max() and min() are two)
    if high - low < BLANK_RANGE:
        raise BlankPage(f"{name}: the page is blank (no ink, no markers)")
    return grey


def _pdfium(name: str):
    try:
        import pypdfium2
    except ImportError:
        raise InputError(
            f"{name}: reading PDF files needs the pypdfium2 package (pip install pypdfium2); "
            f"or save the scan as PNG, JPEG or TIFF"
        ) from None
    return pypdfium2


def _decode_pdf(data: bytes, name: str, page: int) -> np.ndarray:
    """Page ``page`` of a PDF rendered in grey at PDF_DPI (less for a page so large that it would
    pass MAX_PIXELS)."""
    pdfium = _pdfium(name)
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as e:
        raise InputError(
            f"{name}: a PDF that cannot be opened ({e}); is it damaged or password-protected? "
            f"save the scan again, or as PNG, JPEG or TIFF"
        ) from None
    try:
        if page >= len(pdf):
            raise InputError(f"{name}: has {len(pdf)} page(s), page {page + 1} was asked for")
        sheet = pdf[page]
        width_pt, height_pt = sheet.get_size()
        scale = min(PDF_DPI / 72, math.sqrt(MAX_PIXELS / max(1.0, width_pt * height_pt)))
        grey = sheet.render(scale=scale, grayscale=True).to_numpy()
        return np.ascontiguousarray(grey if grey.ndim == 2 else grey[..., 0])
    except pdfium.PdfiumError as e:
        raise InputError(f"{name}: page {page + 1} of the PDF cannot be drawn ({e}); save the scan again") from None
    finally:
        pdf.close()


#: the major brands of an ISO-BMFF file's ``ftyp`` box that make it a HEIC or an AVIF picture
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


def _heif_kind(data: bytes) -> str | None:
    """Whether the bytes are a HEIC or an AVIF picture ("heic", "avif"), whatever the file is called; else None."""
    if data[4:8] != b"ftyp":
        return None
    brand = data[8:12]
    return "avif" if brand in _AVIF_BRANDS else "heic" if brand in _HEIC_BRANDS else None


def _avif_reader(name: str) -> None:
    """AVIF photos need a Pillow built with AVIF (recent releases): else a message that says so."""
    from PIL import features

    if not features.check("avif"):
        raise InputError(f"{name}: this Pillow cannot read AVIF (pip install -U pillow); or export the photo as JPEG")


def _heif_opener(name: str) -> None:
    """HEIC/HEIF (iPhone photos) through the optional pillow-heif package."""
    try:
        import pillow_heif
    except ImportError:
        raise InputError(
            f'{name}: reading HEIC photos needs the pillow-heif package (pip install "mnistp4[heic]"); '
            f"or export the photo as JPEG"
        ) from None
    pillow_heif.register_heif_opener()


def _to_grey8(image: np.ndarray) -> np.ndarray:
    """Any decoded array (grey/BGR/BGRA, 8/16-bit or float) -> grey uint8; alpha composited on white."""
    if image.dtype == np.uint8 and (image.ndim == 2 or image.shape[2] == 3):
        return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    alpha = None
    if image.ndim == 3 and image.shape[2] in (2, 4):
        alpha, image = image[..., -1], image[..., :-1]
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.shape[2] == 3 else image[..., 0]
    grey = image.astype(np.float32)
    if image.dtype == np.uint16:  # the real bit depth (12-bit data in a 16-bit PNG has max 4095)
        scale = 255.0 / (2 ** max(8, int(np.ceil(np.log2(int(image.max()) + 1)))) - 1)
    elif image.dtype.kind == "f":
        scale = 255.0 if float(image.max()) <= 1.0 else 1.0
    else:
        scale = 255.0 / max(255, int(np.iinfo(image.dtype).max)) if image.dtype != np.uint8 else 1.0
    grey *= scale
    if alpha is not None:  # transparent = white paper
        a = alpha.astype(np.float32) * (1.0 / (np.iinfo(alpha.dtype).max if alpha.dtype.kind in "ui" else 1.0))
        grey = grey * a + 255.0 * (1 - a)
    return np.clip(grey + 0.5, 0, 255).astype(np.uint8)


def _decode_pil(data: bytes, page: int) -> np.ndarray | None:
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.seek(page)
            frame = ImageOps.exif_transpose(im)
            if frame.mode in ("P", "PA", "CMYK", "YCbCr", "1"):
                frame = frame.convert("RGBA")
            array = np.asarray(frame)
    except (OSError, ValueError, EOFError):
        return None
    if frame.mode in ("RGB", "RGBA"):
        array = array[..., [2, 1, 0, 3][: array.shape[2]]]  # to OpenCV's BGR(A)
    return _to_grey8(array)


def page_count(path: Path) -> int:
    """Pages of a TIFF or a PDF (1 for other files or when it cannot be read: decoding reports it)."""
    if path.suffix.lower() == ".pdf":
        try:
            pdf = _pdfium(path.name).PdfDocument(str(path))
        except Exception:  # noqa: BLE001 - no pypdfium2, or a damaged file: decoding says which
            return 1
        try:
            return max(1, len(pdf))
        finally:
            pdf.close()
    if path.suffix.lower() not in (".tif", ".tiff"):
        return 1
    from PIL import Image

    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1))
    except Exception:  # noqa: BLE001 - any unreadable file is diagnosed when it is decoded
        return 1
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def walk_sheets(raw_dir: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """(sheet image files under ``raw_dir``, sorted; [(name, reason)] for entries that look like
    sheets but cannot be read: dangling links, link loops, folders named like images, unreadable
    folders, pictures in a form not read here (:data:`NOT_READ`: camera RAW, archives, ...)). Hidden
    files, other files (notes, sidecars) and hidden folders are skipped; linked folders are not followed."""
    found, problems = [], []

    def rel(p) -> str:
        return Path(p).relative_to(raw_dir).as_posix()

    def unreadable(e: OSError):
        problems.append(
            (rel(e.filename), f"folder cannot be read ({e.strerror}); its sheets are skipped - fix its permissions")
        )

    for root, dirs, files in os.walk(raw_dir, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for d in dirs:
            if Path(d).suffix.lower() in SUFFIXES:
                problems.append((rel(Path(root) / d), "a folder, not an image file; skipped"))
        for f in sorted(files):
            path = Path(root) / f
            suffix = path.suffix.lower()
            if f.startswith(".") or (suffix not in SUFFIXES and suffix not in NOT_READ):
                continue
            if suffix in NOT_READ:
                problems.append((rel(path), f"{NOT_READ[suffix]}; skipped"))
                continue
            try:
                path.stat()
            except OSError as e:
                why = (
                    "a link that points to itself (a loop)"
                    if e.errno == 40
                    else ("a link to a missing file" if path.is_symlink() else f"cannot be read ({e.strerror})")
                )
                problems.append((rel(path), f"{why}; skipped"))
                continue
            if not path.is_file():
                problems.append((rel(path), "not a regular file (a device or a pipe); skipped"))
                continue
            if not os.access(path, os.R_OK):
                problems.append((rel(path), "cannot be read (permission denied); fix its permissions"))
                continue
            found.append(path)
    return sorted(found), problems
