"""Score a method: de-identify each test image once and compute every score in that pass
(DESIGN.md §4).

Identity leakage is the *naive attack*: the clean-trained recogniser embeds de-identified probes
and searches the clean test gallery. Two protocols (both from :class:`ReidentificationRate`):
*pair* — gallery = every clean test image, a hit when the nearest is the probe's own source;
*identity* — gallery = one clean enrolment image (the first) per test identity, probes = the
other images of identities that have one, a hit when the nearest enrolment is the same person.
"""
from __future__ import annotations

import logging
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics.functional import (
    cohen_kappa, peak_signal_noise_ratio, structural_similarity_index_measure,
)
from torchmetrics.functional.classification import multilabel_f1_score
from tqdm.auto import tqdm

from benchmark.api import METHOD_INPUT_KEYS, DeIdMethod
from benchmark.bootstrap import percentile_interval, resample_indices, bootstrap_ci, bootstrap_mean_ci
from benchmark.evaluators import Evaluators
from benchmark.metrics import (
    IdentityDiversity, IdentitySimilarity, LesionDice, ReidentificationRate,
)
from benchmark.validation import call_checked, call_plugin, check_images


log = logging.getLogger(__name__)

#: PSNR of an exact recovery (infinite) is reported as this
PSNR_CAP_DB = 100.0


@dataclass
class Score:
    value: float
    ci_low: float | None = None
    ci_high: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}


@dataclass
class Evaluation:
    scores: dict[str, Score]
    chance: dict[str, float]
    clean: dict[str, Score]
    per_sign_f1: dict[str, float]
    cost: dict[str, float]
    n_test: int
    grid: dict[str, Tensor] = field(default_factory=dict)  # a few images for the PNG
    extra: dict[str, Any] = field(default_factory=dict)


def draw_keys(n: int, bits: int, seed: int) -> Tensor:
    """``[n, bits]`` {0,1} keys drawn from ``seed`` (the harness, not the method, owns keys)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (n, bits), generator=gen).float()


# -- peak memory ------------------------------------------------------------------------------
def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: writing 5 resets the process' peak resident set size (VmHWM)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the pass ---------------------------------------------------------------------------------
class _Collector:
    """Accumulates per-image tensors over the test pass (on CPU)."""

    def __init__(self) -> None:
        self.parts: dict[str, list[Tensor]] = {}

    def add(self, **tensors: Tensor) -> None:
        for key, value in tensors.items():
            self.parts.setdefault(key, []).append(value.detach().cpu())

    def get(self, key: str) -> Tensor | None:
        return torch.cat(self.parts[key]) if key in self.parts else None


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


#: per-image outputs of the evaluators on the clean test split (cached between runs)
CLEAN_KEYS = ("clean_pred", "clean_sign_probs", "clean_emb", "clean_fn")


@torch.no_grad()
def clean_outputs(test_loader, evaluators: Evaluators, *, lesion_masks: dict[int, Tensor],
                  device: torch.device, cache: Path | None = None, progress: bool = True
                  ) -> dict[str, Tensor]:
    """The evaluators' outputs on the clean test images (the reference every method is scored
    against): they depend only on the evaluators and the data, so they are computed once and
    cached in ``cache`` (written atomically), not recomputed in every run."""
    if cache is not None and cache.is_file():
        try:
            return torch.load(cache, map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated or foreign file: recompute it
            log.warning("ignoring unreadable clean-output cache %s: %s", cache, err)
    out, clean_dice = _Collector(), LesionDice()
    for batch in tqdm(test_loader, desc="evaluators on clean test images",
                      disable=not progress):
        images, landmarks = batch["image"].to(device), batch["landmarks"].to(device)
        probs, sign_probs = evaluators.classifier.predict(images, landmarks)
        out.add(index=batch["index"], clean_pred=probs.argmax(1), clean_sign_probs=sign_probs,
                clean_emb=evaluators.identity.embed(images))
        if evaluators.facenet is not None:
            out.add(clean_fn=evaluators.facenet.embed(images))
        _lesion_dice(evaluators, batch, images, lesion_masks, clean_dice, device)
    result = {k: out.get(k) for k in ("index", *CLEAN_KEYS) if out.get(k) is not None}
    result["clean_dice"] = clean_dice.per_sample().cpu()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        torch.save(result, tmp)
        os.replace(tmp, cache)
    return result


@torch.no_grad()
def run_test_pass(method: DeIdMethod, test_loader, evaluators: Evaluators, *,
                  lesion_masks: dict[int, Tensor], seed: int, device: torch.device,
                  grid_images: int = 8, progress: bool = True,
                  clean_cache: Path | None = None) -> tuple[_Collector, dict]:
    """De-identify every test image once (plus recovery for reversible methods) and keep what
    the scores need: embeddings, predictions, per-image Dice/PSNR/SSIM, timings. The clean
    references come from :func:`clean_outputs` (cached in ``clean_cache``), so the evaluators
    see the clean test split once per evaluator set, not once per run."""
    name, bits = method.name, int(method.key_bits)
    n_total = len(test_loader.dataset)
    right = draw_keys(n_total, bits, seed + 1) if bits else None
    wrong = draw_keys(n_total, bits, seed + 2) if bits else None
    other = draw_keys(n_total, bits, seed + 3) if bits else None
    out = _Collector()
    dice = LesionDice()
    grid: dict[str, list[Tensor]] = {}
    # grid columns spread over the whole split: consecutive rows are often one person
    grid_rows = torch.linspace(0, n_total - 1, min(grid_images, n_total)).long().unique()
    anonymize_s, batch_sizes, start = [], [], 0
    _reset_peak_memory(device)
    for batch in tqdm(test_loader, desc=f"evaluating {name}", disable=not progress):
        images = batch["image"].to(device)
        b = len(images)
        sl = slice(start, start + b)
        start += b
        keys = right[sl].to(device) if bits else None
        # labels, signs, masks and identities never reach the method; the image is a copy
        method_batch = {k: batch[k].to(device) for k in METHOD_INPUT_KEYS if k in batch}
        method_batch["image"] = images.clone()
        _synchronize(device)
        t0 = time.perf_counter()
        deid = call_plugin(name, "anonymize", method.anonymize, method_batch, keys)
        _synchronize(device)
        anonymize_s.append(time.perf_counter() - t0)
        deid = check_images(name, "anonymize", deid, images)
        batch_sizes.append(b)

        landmarks = batch["landmarks"].to(device)
        deid_probs, deid_sign_probs = evaluators.classifier.predict(deid, landmarks)
        out.add(label=batch["label"], signs=batch["signs"], identity=batch["identity"],
                index=batch["index"], deid_pred=deid_probs.argmax(1),
                deid_sign_probs=deid_sign_probs, deid_emb=evaluators.identity.embed(deid))
        if evaluators.facenet is not None:
            out.add(deid_fn=evaluators.facenet.embed(deid))
        _lesion_dice(evaluators, batch, deid, lesion_masks, dice, device)
        shown = {"original": images, "de-identified": deid}
        if method.reversible:
            shown.update(_recovery(method, images, deid, keys, wrong[sl].to(device),
                                   other[sl].to(device), method_batch, evaluators, out))
        in_batch = grid_rows[(grid_rows >= sl.start) & (grid_rows < sl.stop)] - sl.start
        for row, tensor in shown.items():
            grid.setdefault(row, []).append(tensor[in_batch.to(tensor.device)].cpu())
    clean = clean_outputs(test_loader, evaluators, lesion_masks=lesion_masks, device=device,
                          cache=clean_cache, progress=progress)
    if not torch.equal(clean["index"], out.get("index")) or (
            evaluators.facenet is not None and "clean_fn" not in clean):
        log.warning("clean-output cache %s does not match this test split; recomputing",
                    clean_cache)
        if clean_cache is not None:
            clean_cache.unlink(missing_ok=True)
        clean = clean_outputs(test_loader, evaluators, lesion_masks=lesion_masks,
                              device=device, cache=clean_cache, progress=progress)
    for key in CLEAN_KEYS:
        if key in clean:
            out.parts[key] = [clean[key]]
    clean_dice = LesionDice()
    if len(clean["clean_dice"]):
        clean_dice.values.append(clean["clean_dice"])
    cost = {
        "images_per_s": n_total / max(sum(anonymize_s), 1e-9),
        "anonymize_s": sum(anonymize_s),
        "peak_memory_mb": _peak_memory_mb(device),
        "batch_sizes": batch_sizes,
        "batch_seconds": anonymize_s,
    }
    extras = {"dice": dice, "clean_dice": clean_dice,
              "grid": {k: torch.cat(v) for k, v in grid.items()}}
    return out, {"cost": cost, **extras}


def _lesion_dice(evaluators, batch, images, lesion_masks, dice, device):
    """Per-image Dice of the segmenter on ``images`` for the batch rows that have a mask."""
    if evaluators.segmenter is None or not lesion_masks:
        return
    rows = [i for i, r in enumerate(batch["index"].tolist()) if r in lesion_masks]
    if not rows:
        return
    target = torch.stack([lesion_masks[batch["index"][i].item()] for i in rows]).to(device)
    dice.update(evaluators.segmenter.predict(images[rows]).cpu(), target.cpu())


def _recovery(method, images, deid, keys, wrong_keys, other_keys, method_batch, evaluators, out):
    name = method.name
    recovered = call_checked(name, "recover", method.recover, deid.clone(), keys, reference=images)
    wrong = call_checked(name, "recover", method.recover, deid.clone(), wrong_keys,
                         reference=images)
    # the same faces under a second key, for identity diversity across keys
    method_batch = {**method_batch, "image": images.clone()}
    second = call_checked(name, "anonymize", method.anonymize, method_batch, other_keys,
                          reference=images)
    psnr = peak_signal_noise_ratio(recovered, images, data_range=1.0, reduction="none",
                                   dim=(1, 2, 3))
    out.add(
        # exact recovery has infinite PSNR; capping keeps means and intervals finite
        psnr=psnr.clamp(max=PSNR_CAP_DB),
        ssim=structural_similarity_index_measure(recovered, images, data_range=1.0,
                                                 reduction="none"),
        rec_emb=evaluators.identity.embed(recovered),
        wrong_emb=evaluators.identity.embed(wrong),
        second_emb=evaluators.identity.embed(second),
    )
    return {"recovered": recovered, "wrong-key recovered": wrong}


# -- scores with bootstrap intervals ---------------------------------------------------------
def _mean_score(values: Tensor, resamples: int, seed: int) -> Score:
    values = values.double()
    low, high = bootstrap_mean_ci(values, n_resamples=resamples, seed=seed)
    return Score(float(values.mean()), low, high)


def _statistic_score(statistic, n: int, resamples: int, seed: int) -> Score:
    low, high = bootstrap_ci(statistic, n, n_resamples=resamples, seed=seed)
    return Score(float(statistic(torch.arange(n))), low, high)


def enrolment_split(identity: Tensor) -> tuple[Tensor, Tensor]:
    """Positions of the first image of each identity (enrolment) and of every other image."""
    first: dict[int, int] = {}
    for pos, ident in enumerate(identity.tolist()):
        first.setdefault(ident, pos)
    enrol = torch.tensor(sorted(first.values()), dtype=torch.long)
    probes = torch.ones(len(identity), dtype=torch.bool)
    probes[enrol] = False
    return enrol, probes.nonzero().flatten()


def reidentification_scores(prefix: str, gallery: Tensor, probes: Tensor, identity: Tensor,
                            resamples: int, seed: int, *, identity_protocol: bool = True
                            ) -> tuple[dict[str, Score], dict[str, float]]:
    """Naive-attack leakage of ``probes`` (one per clean ``gallery`` image, same order)."""
    scores, chance = {}, {}
    positions = torch.arange(len(gallery))
    pair = ReidentificationRate(gallery, positions, top_k=(1, 5))
    pair.update(probes, positions)
    hits = pair.per_sample()
    for col, k in enumerate(pair.top_k):
        scores[f"{prefix}_top{k}"] = _mean_score(hits[:, col], resamples, seed)
        chance[f"{prefix}_top{k}"] = pair.chance(k)
    enrol, probe_pos = enrolment_split(identity)
    if identity_protocol and len(probe_pos):
        ident = ReidentificationRate(gallery[enrol], identity[enrol], top_k=(1, 5))
        ident.update(probes[probe_pos], identity[probe_pos])
        hits = ident.per_sample()
        for col, k in enumerate(ident.top_k):
            scores[f"{prefix}_top{k}_identity"] = _mean_score(hits[:, col], resamples, seed)
            chance[f"{prefix}_top{k}_identity"] = ident.chance(k)
    return scores, chance


def impostor_similarity(embeddings: Tensor, identity: Tensor) -> tuple[float, float]:
    """Mean cosine similarity of clean test pairs of different people (the chance level of
    identity similarity) and of the same person (the genuine level)."""
    sim = torch.nn.functional.normalize(embeddings.float(), dim=1)
    sim = sim @ sim.t()
    same = identity[:, None] == identity[None, :]
    off_diagonal = ~torch.eye(len(identity), dtype=torch.bool)
    genuine = sim[same & off_diagonal]
    return float(sim[~same].mean()), float(genuine.mean()) if len(genuine) else float("nan")


def _count_score(counts: Tensor, score_fn, resamples: int, seed: int) -> Score:
    """A score that is a function of per-image counts summed over the test images
    (``counts [n,K]`` -> ``score_fn(sums [R,K]) -> [R]``), with its bootstrap CI computed for
    all resamples at once: each resample is a weight vector (how often each image was drawn),
    so the sums are one matrix product. Same resamples as :func:`bootstrap_ci`."""
    counts = counts.double()
    n = len(counts)
    stats = []
    for idx in resample_indices(n, resamples, seed):
        weights = torch.zeros(len(idx), n, dtype=torch.float64)
        weights.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
        stats.append(score_fn(weights @ counts))
    low, high = percentile_interval(torch.cat(stats), 0.95)
    return Score(float(score_fn(counts.sum(0, keepdim=True))[0]), float(low), float(high))


def _f1_counts(pred: Tensor, true: Tensor) -> Tensor:
    """Per-image true positive, false positive and false negative indicators ``[n, 3K]``
    of {0,1} predictions and targets ``[n,K]``."""
    pred, true = pred.bool(), true.bool()
    return torch.cat([pred & true, pred & ~true, ~pred & true], dim=1).double()


def _macro_f1(ignore_absent: bool):
    """Macro F1 from summed counts ``[R, 3K]``, as torchmetrics computes it: 0 where a class
    has no true or predicted positive; multiclass ignores classes absent from both."""
    def score(sums: Tensor) -> Tensor:
        tp, fp, fn = sums.chunk(3, dim=1)
        denominator = 2 * tp + fp + fn
        f1 = torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1e-12),
                         torch.zeros_like(tp))
        weights = (denominator > 0).double() if ignore_absent else torch.ones_like(tp)
        return (f1 * weights).sum(1) / weights.sum(1).clamp_min(1e-12)
    return score


def diagnosis_scores(prefix: str, pred: Tensor, sign_probs: Tensor, out: _Collector,
                     num_classes: int, resamples: int, seed: int) -> dict[str, Score]:
    label, signs = out.get("label"), out.get("signs")
    one_hot = torch.nn.functional.one_hot
    scores = {
        f"{prefix}accuracy": _mean_score((pred == label).float(), resamples, seed),
        f"{prefix}macro_f1": _count_score(
            _f1_counts(one_hot(pred, num_classes), one_hot(label, num_classes)),
            _macro_f1(ignore_absent=True), resamples, seed),
    }
    if signs.shape[1]:
        scores[f"{prefix}sign_f1"] = _count_score(
            _f1_counts(sign_probs >= 0.5, signs >= 0.5), _macro_f1(ignore_absent=False),
            resamples, seed)
    return scores


def _kappa(a: Tensor, b: Tensor, num_classes: int) -> Tensor:
    """Cohen's kappa of two diagnoses; identical diagnoses agree perfectly (1), also when they
    are all one class, where the textbook formula is 0/0."""
    if torch.equal(a, b):
        return torch.tensor(1.0)
    return cohen_kappa(a, b, "multiclass", num_classes=num_classes, validate_args=False)


def compute_scores(out: _Collector, extras: dict, *, classes: list[str], signs: list[str],
                   resamples: int, seed: int) -> Evaluation:
    """Turn the pass' per-image records into scores, chance levels and clean references."""
    identity = out.get("identity")
    clean_emb, deid_emb = out.get("clean_emb"), out.get("deid_emb")
    n, c = len(identity), len(classes)
    scores, chance = reidentification_scores("reid", clean_emb, deid_emb, identity, resamples,
                                              seed)
    similarity = IdentitySimilarity()
    similarity.update(deid_emb, clean_emb)
    scores["id_similarity"] = _mean_score(similarity.per_sample(), resamples, seed)
    chance["id_similarity"], genuine = impostor_similarity(clean_emb, identity)

    clean_pred, deid_pred = out.get("clean_pred"), out.get("deid_pred")
    scores.update(diagnosis_scores("", deid_pred, out.get("deid_sign_probs"), out, c,
                                   resamples, seed))
    scores["kappa"] = _statistic_score(
        lambda i: _kappa(deid_pred[i], clean_pred[i], c), n, resamples, seed)
    label = out.get("label")
    chance["accuracy"] = float(torch.bincount(label, minlength=c).max()) / n  # majority class
    if len(extras["dice"].per_sample()):
        scores["dice"] = _mean_score(extras["dice"].per_sample(), resamples, seed)

    clean = {k.replace("clean_", ""): v for k, v in diagnosis_scores(
        "clean_", clean_pred, out.get("clean_sign_probs"), out, c, resamples, seed).items()}
    clean_reid, _ = reidentification_scores("reid", clean_emb, clean_emb, identity, resamples,
                                            seed)
    clean.update(clean_reid)
    clean["id_similarity_genuine"] = Score(genuine)
    if len(extras["clean_dice"].per_sample()):
        clean["dice"] = _mean_score(extras["clean_dice"].per_sample(), resamples, seed)

    per_sign = multilabel_f1_score(out.get("deid_sign_probs"), out.get("signs").long(),
                                   len(signs), average="none") if signs else torch.empty(0)
    if out.get("psnr") is not None:
        _reversibility_scores(out, scores, chance, identity, resamples, seed)
    if out.get("clean_fn") is not None:
        fn_scores, fn_chance = reidentification_scores(
            "facenet_reid", out.get("clean_fn"), out.get("deid_fn"), identity, resamples, seed)
        scores.update(fn_scores)
        chance.update(fn_chance)

    cost = dict(extras["cost"])
    sizes = torch.tensor(cost.pop("batch_sizes"), dtype=torch.float64)
    seconds = torch.tensor(cost.pop("batch_seconds"), dtype=torch.float64).clamp_min(1e-9)
    # throughput is resampled over batches, the unit anonymize() is timed in
    scores["images_per_s"] = _statistic_score(
        lambda i: float(sizes[i].sum() / seconds[i].sum()), len(sizes), resamples, seed)
    return Evaluation(scores, chance, clean,
                      {s: float(v) for s, v in zip(signs, per_sign.tolist())}, cost, n,
                      extras["grid"])


def _reversibility_scores(out, scores, chance, identity, resamples, seed):
    clean_emb = out.get("clean_emb")
    scores["recovery_psnr"] = _mean_score(out.get("psnr"), resamples, seed)
    scores["recovery_ssim"] = _mean_score(out.get("ssim"), resamples, seed)
    similarity = IdentitySimilarity()
    similarity.update(out.get("rec_emb"), clean_emb)
    scores["recovery_id_similarity"] = _mean_score(similarity.per_sample(), resamples, seed)
    wrong, wrong_chance = reidentification_scores(
        "wrongkey_reid", clean_emb, out.get("wrong_emb"), identity, resamples, seed,
        identity_protocol=False)
    scores.update(wrong)
    chance.update(wrong_chance)
    diversity = IdentityDiversity()
    diversity.update(out.get("deid_emb"), out.get("second_emb"))
    scores["key_diversity"] = _mean_score(diversity.per_sample(), resamples, seed)


def evaluate_method(method: DeIdMethod, test_loader, evaluators: Evaluators, *,
                    classes: list[str], signs: list[str], lesion_masks: dict[int, Tensor],
                    seed: int, device: torch.device, resamples: int = 1000,
                    grid_images: int = 8, progress: bool = True,
                    clean_cache: Path | None = None) -> Evaluation:
    """One pass over the test split, then every score with its bootstrap 95% CI.
    ``clean_cache``: file caching the evaluators' clean-test outputs
    (:meth:`Evaluators.clean_cache_path`); None recomputes them."""
    out, extras = run_test_pass(method, test_loader, evaluators, lesion_masks=lesion_masks,
                                seed=seed, device=device, grid_images=grid_images,
                                progress=progress, clean_cache=clean_cache)
    return compute_scores(out, extras, classes=classes, signs=signs, resamples=resamples,
                          seed=seed)
