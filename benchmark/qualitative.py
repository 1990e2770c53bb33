"""Pictures a person would rather look at than numbers: the qualitative grid and the
privacy-utility frontier."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

from data.files import atomic_write  # noqa: E402


def _save(fig, path: Path) -> None:
    """Save as PNG or PDF (by the suffix), atomically; no creation date, so a rebuild from the
    same records writes the same bytes."""
    buffer = io.BytesIO()
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    fig.savefig(buffer, format=fmt, dpi=120, bbox_inches="tight",
                metadata={"CreationDate": None} if fmt == "pdf" else None)
    plt.close(fig)
    atomic_write(Path(path), buffer.getvalue())


def save_grid(rows: dict[str, Tensor], path: Path, title: str) -> None:
    """One row per stage (original, de-identified, recovered, wrong-key recovered), one column
    per test image."""
    n = max(len(t) for t in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.4 * len(rows)), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c].permute(1, 2, 0).clamp(0, 1).numpy())
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def save_frontier(points: list[dict], path: Path, *, axes: list[tuple[str, str]],
                  chance: float | None, clean: dict[str, float | None],
                  clean_accuracy: float | None, title: str) -> None:
    """Privacy-utility frontier, one panel per privacy axis ``(score, label)`` side by side
    (naive and worst case): leakage (lower is better) against disease accuracy. ``points``
    carry ``method``, ``family``, ``reversible``, ``accuracy``, each axis score and ``sweep``
    (the swept value, or None); sweep points of a family are joined into a curve."""
    fig, panels = plt.subplots(1, len(axes), figsize=(5.2 * len(axes), 4.3), squeeze=False,
                               sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    families = sorted({p["family"] for p in points})
    colour = {f: colours[i % len(colours)] for i, f in enumerate(families)}
    for ax, (leak, label) in zip(panels[0], axes):
        for family in families:
            members = [p for p in points if p["family"] == family and p.get(leak) is not None]
            curve = sorted((p for p in members if p.get("sweep") is not None),
                           key=lambda p: p["sweep"])
            if len(curve) > 1:
                ax.plot([p["accuracy"] for p in curve], [p[leak] for p in curve], "-",
                        color=colour[family], lw=1, alpha=0.7, zorder=2)
            for p in members:
                ax.scatter(p["accuracy"], p[leak], marker="s" if p["reversible"] else "o",
                           color=colour[family], s=22, zorder=3)
                ax.annotate(p["method"], (p["accuracy"], p[leak]), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
        if chance is not None:
            ax.axhline(chance, ls="--", c="grey", lw=1, label="chance re-identification")
        if clean_accuracy is not None:
            ax.axvline(clean_accuracy, ls=":", c="green", lw=1, label="clean accuracy")
            if clean.get(leak) is not None:
                ax.scatter(clean_accuracy, clean[leak], marker="*", s=120, c="black",
                           zorder=4, label="clean (no-op)")
        ax.set_xlim(-0.02, 1.02)  # both axes are rates: keep the whole square in view
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("disease accuracy on de-identified images (higher is better)")
        ax.set_ylabel(f"{label} (lower is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=9)
    _save(fig, path)
