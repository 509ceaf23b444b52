"""Thumbnails with Pillow: pure functions from image bytes to thumbnail bytes.

Methods, as Synapse and the spec define them:
- ``scale``: the largest image that fits inside width x height keeping the
  aspect ratio, never larger than the original;
- ``crop``: exactly width x height, scaled to cover the box then cut from
  the centre.

A JPEG source makes a JPEG thumbnail; anything else a PNG (lossless, keeps
transparency). With ``animated`` and an animated source (GIF, WebP, APNG),
every frame is scaled into an animated WebP, as the spec prefers.

Images over ``max_pixels`` are refused before Pillow decodes them (the size
is read from the header), so a small file that inflates to gigabytes (a
decompression bomb) costs nothing. These functions block: callers run them
in a thread.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

# Pillow is imported at the first thumbnail, not at start: it is ~8 MiB of
# resident memory a server that never sees an image should not pay.

# what Pillow may thumbnail, and as what (Synapse's list)
THUMBNAILABLE_TYPES = frozenset({
    "image/jpeg", "image/jpg", "image/png", "image/gif", "image/webp", "image/apng",
})


class ThumbnailError(Exception):
    """The source cannot be thumbnailed (not an image, too big, corrupt)."""


@dataclass(frozen=True)
class ThumbnailResult:
    data: bytes
    media_type: str
    width: int
    height: int


def scaled_size(src_w: int, src_h: int, width: int, height: int) -> tuple[int, int]:
    """The ``scale`` method's size: fits in width x height, never upscaled."""
    if src_w * height > src_h * width:
        out_w, out_h = width, max(1, (src_h * width) // src_w)
    else:
        out_w, out_h = max(1, (src_w * height) // src_h), height
    if out_w > src_w or out_h > src_h:
        return src_w, src_h
    return out_w, out_h


def _open(data: bytes, max_pixels: int) -> Image.Image:
    from PIL import Image
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb warning becomes an error; our limit comes first
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            w, h = image.size
            if w <= 0 or h <= 0 or w * h > max_pixels:
                raise ThumbnailError(f"image of {w}x{h} pixels is over the limit")
            return image
    except ThumbnailError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ThumbnailError(f"image too large: {e}") from None
    except Exception as e:
        raise ThumbnailError(f"not an image Pillow can read: {e}") from None


def _resize(frame: Image.Image, width: int, height: int, method: str) -> Image.Image:
    from PIL import Image
    src_w, src_h = frame.size
    if method == "crop":
        # scale to cover the box, then cut the centre
        scale = max(width / src_w, height / src_h)
        cover_w, cover_h = max(width, round(src_w * scale)), max(height, round(src_h * scale))
        resized = frame.resize((cover_w, cover_h), Image.Resampling.LANCZOS)
        left, top = (cover_w - width) // 2, (cover_h - height) // 2
        return resized.crop((left, top, left + width, top + height))
    out_w, out_h = scaled_size(src_w, src_h, width, height)
    return frame.resize((out_w, out_h), Image.Resampling.LANCZOS)


def _static(image: Image.Image, width: int, height: int, method: str,
            source_type: str) -> ThumbnailResult:
    jpeg = source_type in ("image/jpeg", "image/jpg")
    frame = image.convert("RGB") if jpeg else image.convert(
        "RGBA" if image.mode in ("RGBA", "LA", "P", "PA") else "RGB")
    out = _resize(frame, width, height, method)
    buf = io.BytesIO()
    if jpeg:
        out.save(buf, "JPEG", quality=80)
    else:
        out.save(buf, "PNG")
    return ThumbnailResult(buf.getvalue(), "image/jpeg" if jpeg else "image/png",
                           out.size[0], out.size[1])


def make_thumbnail(data: bytes, source_type: str, width: int, height: int, method: str,
                   max_pixels: int, animated: bool = False) -> ThumbnailResult:
    """A thumbnail of ``data`` (blocking). ThumbnailError when there can be none."""
    if source_type.split(";")[0].strip().lower() not in THUMBNAILABLE_TYPES:
        raise ThumbnailError(f"cannot thumbnail {source_type}")
    image = _open(data, max_pixels)
    try:
        image.load()
        is_animated = bool(getattr(image, "is_animated", False))
        if animated and is_animated:
            from PIL import ImageSequence
            frames = []
            durations = []
            for frame in ImageSequence.Iterator(image):
                frames.append(_resize(frame.convert("RGBA"), width, height, method))
                durations.append(int(frame.info.get("duration", 100)))
            buf = io.BytesIO()
            frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:],
                           duration=durations, loop=int(image.info.get("loop", 0)),
                           lossless=False, quality=80)
            return ThumbnailResult(buf.getvalue(), "image/webp", frames[0].size[0],
                                   frames[0].size[1])
        return _static(image, width, height, method, source_type.lower())
    except ThumbnailError:
        raise
    except Exception as e:
        # a truncated or corrupt file fails while decoding, not while opening
        raise ThumbnailError(f"cannot thumbnail this image: {e}") from None
