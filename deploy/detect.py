"""Face detection and 5-point landmarks with MTCNN (Zhang et al., IEEE SPL 2016).

facenet-pytorch ships the MTCNN weights inside its wheel, so nothing is downloaded. MTCNN's
landmark order is the suite's (``data/regions.py``): left eye, right eye, nose tip, left and
right mouth corner, left/right as seen in the image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from data.regions import CANONICAL_LANDMARKS


@dataclass(frozen=True)
class Face:
    """One face in a photo: ``box`` (x0, y0, x1, y1) and ``points`` ``[5,2]`` in pixels.
    ``aligned`` faces are whole pre-aligned crops (``--aligned``): they are resized, not warped."""

    box: tuple[float, float, float, float]
    points: np.ndarray
    score: float = 1.0
    aligned: bool = False

    def to_json(self) -> dict:
        return {"box": [round(float(v), 2) for v in self.box],
                "points": np.round(self.points, 3).tolist(), "aligned": self.aligned}

    @classmethod
    def from_json(cls, entry: dict) -> "Face":
        return cls(tuple(entry["box"]), np.asarray(entry["points"], dtype=np.float64),
                   aligned=bool(entry.get("aligned", False)))


def aligned_face(width: int, height: int) -> Face:
    """The face of a pre-aligned crop: the canonical template stretched over the whole image."""
    points = CANONICAL_LANDMARKS.double().numpy() * (width, height)
    return Face((0.0, 0.0, float(width), float(height)), points, aligned=True)


#: photos are shrunk so that the smallest face asked for is this big before MTCNN sees them:
#: twice MTCNN's 12 px window keeps 5-point landmarks within about a pixel, and the image
#: pyramid MTCNN builds (with slow area resampling) starts from a much smaller picture
DETECTION_FACE_PX = 24
#: MTCNN's stage thresholds; the first (P-Net) raised from facenet-pytorch's 0.6 to 0.7, which
#: sends a third fewer candidate windows to the later stages (every face of the test photos
#: scores above 0.99 there)
THRESHOLDS = (0.7, 0.7, 0.7)


class FaceDetector:
    """Every face of at least ``min_face`` pixels in a photo, with its 5 landmarks."""

    def __init__(self, min_face: int = 40) -> None:
        import torch
        from facenet_pytorch import MTCNN

        if min_face < 12:
            raise ValueError(f"--min-face must be at least 12 px (MTCNN's smallest window), got {min_face}")
        self.scale = min(1.0, DETECTION_FACE_PX / min_face)
        self.mtcnn = MTCNN(keep_all=True, min_face_size=min_face * self.scale,
                           thresholds=list(THRESHOLDS), device="cpu")
        for net in (self.mtcnn.pnet, self.mtcnn.rnet, self.mtcnn.onet):
            # photos arrive as H,W,C: channels-last pooling and convolution are ~1.3x faster on CPU
            net.to(memory_format=torch.channels_last)

    def _shrink(self, image: np.ndarray) -> np.ndarray:
        if self.scale == 1.0:
            return image
        height, width = image.shape[:2]
        size = (max(1, round(width * self.scale)), max(1, round(height * self.scale)))
        return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))

    def __call__(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Faces of each ``[H,W,3]`` uint8 image; images of one size are detected in one batch."""
        found: list[list[Face]] = [[] for _ in images]
        by_size: dict[tuple, list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(image.shape, []).append(i)
        for indices in by_size.values():
            batch = np.stack([self._shrink(images[i]) for i in indices])
            boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
            for i, b, p, pts in zip(indices, boxes, probs, points):
                if b is not None:
                    found[i] = [Face(tuple(float(v) / self.scale for v in box),
                                     np.asarray(pt, dtype=np.float64) / self.scale, float(score))
                                for box, score, pt in zip(b, p, pts)]
        return found
