"""FaceNet identity recogniser from a user-supplied weights file (never downloaded)."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FACENET_SIZE = 160


class FaceNetRecognizer(nn.Module):
    """InceptionResnetV1 face embeddings (Schroff et al., "FaceNet", CVPR 2015; weights from
    facenet-pytorch's VGGFace2/CASIA releases) behind MTCNN alignment (Zhang et al., 2016;
    its small weights ship inside facenet-pytorch). Faces MTCNN cannot find (a masked face,
    say) are resized whole, so the attack still gets an embedding for every image."""

    def __init__(self, weights_file: str | Path, device: str | torch.device = "cpu") -> None:
        super().__init__()
        from facenet_pytorch import MTCNN, InceptionResnetV1

        path = Path(weights_file)
        self.weights_file = path
        if not path.is_file():
            raise FileNotFoundError(f"--facenet-weights: no such file {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"--facenet-weights: cannot read {path}: {err}") from err
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        # the classification layer of a released checkpoint is irrelevant to embeddings
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        self.net = InceptionResnetV1(pretrained=None, classify=False)
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("logits.")]
        if missing or unexpected:
            raise ValueError(
                f"--facenet-weights: {path} is not an InceptionResnetV1 state dict "
                f"(missing {missing[:3]}..., unexpected {unexpected[:3]}...)"
            )
        self.net.eval().to(device)
        self.mtcnn = MTCNN(image_size=FACENET_SIZE, margin=8, min_face_size=16, device=device)
        self.device = torch.device(device)

    def _align(self, images: Tensor) -> Tensor:
        pil = [(img.clamp(0, 1).permute(1, 2, 0) * 255).byte().cpu().numpy() for img in images]
        crops = []
        for img, arr in zip(images, pil):
            try:
                face = self.mtcnn(arr)
            except Exception:  # MTCNN raises on some degenerate inputs (e.g. flat images)
                face = None
            if face is None:  # whole image, standardised as MTCNN's post-processing does
                face = F.interpolate(img[None], size=FACENET_SIZE, mode="bilinear",
                                     align_corners=False)[0]
                face = (face * 255 - 127.5) / 128.0
            crops.append(face.to(self.device))
        return torch.stack(crops)

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        """L2-normalised 512-d embeddings of ``[B,3,H,W]`` images in [0,1]."""
        return F.normalize(self.net(self._align(images)), dim=1)
