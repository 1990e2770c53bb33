"""Score a method: de-identify each test image once, compute the utility, naturalness and
cost scores in that pass, then run the attacks of :mod:`benchmark.attacks` on the result
(docs/architecture.md §4, docs/threat_model.md).

The method sees the test images only through :class:`benchmark.blinding.BlindedMethod`: in a
per-run random order, with opaque indices, without labels. Every per-image score carries a
bootstrap interval resampled by identity (:mod:`benchmark.scoring`). ``reid_worst`` is the
highest identity-protocol top-1 over the attacks that ran.
"""
from __future__ import annotations

import logging
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchmetrics.functional import cohen_kappa
from torchmetrics.functional.classification import multilabel_f1_score
from tqdm.auto import tqdm

from benchmark.api import DeIdMethod
from benchmark.attacks import ATTACKS, AttackCache, AttackContext, AttackResult, TestSet
from benchmark.blinding import BlindedMethod, draw_keys, stream
from benchmark.evaluators import Evaluators
from benchmark.metrics import LesionDice
from benchmark.naturalness import kid_score
from benchmark.profiles import AttackConfig, EvaluatorConfig
from benchmark.scores import worst_case_names
from benchmark.scoring import Score, count_score, mean_score, statistic_score
from data.files import atomic_torch_save

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    scores: dict[str, Score]
    chance: dict[str, float]
    clean: dict[str, Score]
    per_sign_f1: dict[str, float]
    cost: dict[str, Any]
    n_test: int
    grid: dict[str, Tensor] = field(default_factory=dict)  # a few images for the PNG
    extra: dict[str, Any] = field(default_factory=dict)


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


# -- the clean references --------------------------------------------------------------------
class _Collector:
    """Accumulates per-image tensors over a pass (on CPU)."""

    def __init__(self) -> None:
        self.parts: dict[str, list[Tensor]] = {}

    def add(self, **tensors: Tensor) -> None:
        for key, value in tensors.items():
            self.parts.setdefault(key, []).append(value.detach().cpu())

    def get(self, key: str) -> Tensor | None:
        return torch.cat(self.parts[key]) if key in self.parts else None


#: per-image outputs of the evaluators on the clean test split (cached between runs)
CLEAN_KEYS = ("clean_pred", "clean_sign_probs", "clean_emb")


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
        _lesion_dice(evaluators, batch["index"], images, lesion_masks, clean_dice, device)
    result = {k: out.get(k) for k in ("index", *CLEAN_KEYS)}
    result["clean_dice"] = clean_dice.per_sample().cpu()
    if cache is not None:
        atomic_torch_save(result, cache)
    return result


def _checked_clean_outputs(test_loader, evaluators, rows: Tensor, **kwargs) -> dict[str, Tensor]:
    """:func:`clean_outputs`, recomputed when the cache belongs to another test split."""
    clean = clean_outputs(test_loader, evaluators, **kwargs)
    if not torch.equal(clean["index"], rows):
        cache = kwargs.get("cache")
        log.warning("clean-output cache %s does not match this test split; recomputing", cache)
        if cache is not None:
            cache.unlink(missing_ok=True)
        clean = clean_outputs(test_loader, evaluators, **kwargs)
    return clean


def _lesion_dice(evaluators, rows: Tensor, images: Tensor, lesion_masks, dice, device):
    """Per-image Dice of the segmenter on ``images`` for the rows that have a lesion mask."""
    if evaluators.segmenter is None or not lesion_masks:
        return
    keep = [i for i, r in enumerate(rows.tolist()) if r in lesion_masks]
    if not keep:
        return
    target = torch.stack([lesion_masks[int(rows[i])] for i in keep])
    pred = evaluators.segmenter.predict(images[keep].to(device)).cpu()
    dice.update(pred, target.cpu())


# -- the test split as the harness holds it ---------------------------------------------------
@dataclass
class TestSplit:
    """Everything the harness keeps of the test split: the attackable part (``TestSet``) and
    the labels that score utility. ``rows`` are metadata rows; they never reach a method."""

    attackable: TestSet
    label: Tensor
    signs: Tensor
    rows: Tensor


def attribute_combinations(dataset, label: Tensor, signs: Tensor) -> Tensor:
    """One id per distinct (label, signs, age, sex) of the test images (the attribute floor);
    age and sex come from the metadata when the dataset has those columns."""
    columns = [label.tolist(), [tuple(s.nonzero().flatten().tolist()) for s in signs]]
    root, rows = getattr(dataset, "root", None), getattr(dataset, "rows", None)
    if root is not None and rows is not None:
        from data.layout import read_metadata

        table = read_metadata(root)[0]
        columns += [table.loc[rows, c].tolist() for c in ("age", "sex") if c in table.columns]
    keys = list(zip(*columns))
    ids = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    return torch.tensor([ids[k] for k in keys], dtype=torch.long)


def collect_test_split(test_loader) -> TestSplit:
    out = _Collector()
    for batch in test_loader:
        out.add(image=(batch["image"] * 255).round().to(torch.uint8),
                **{k: batch[k] for k in ("landmarks", "identity", "label", "signs", "index")})
    label, signs = out.get("label"), out.get("signs")
    attributes = attribute_combinations(test_loader.dataset, label, signs)
    test = TestSet(out.get("image"), out.get("landmarks"), out.get("identity"), attributes)
    return TestSplit(test, label, signs, out.get("index"))


def attacker_training_data(dataset) -> dict[str, Tensor]:
    """The attacker's own data: images (uint8), landmarks and identities of the training
    split (a :class:`data.MeMaDataset`)."""
    return {"image": dataset.images, "landmarks": dataset.landmarks,
            "identity": dataset.identities}


# -- utility scores ---------------------------------------------------------------------------
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


def diagnosis_scores(pred: Tensor, sign_probs: Tensor, split: TestSplit, num_classes: int,
                     resamples: int, seed: int) -> dict[str, Score]:
    label, signs = split.label, split.signs
    identity, one_hot = split.attackable.identity, torch.nn.functional.one_hot
    scores = {
        "accuracy": mean_score((pred == label).float(), resamples, seed, identity),
        "macro_f1": count_score(
            _f1_counts(one_hot(pred, num_classes), one_hot(label, num_classes)),
            _macro_f1(ignore_absent=True), resamples, seed, identity),
    }
    if signs.shape[1]:
        scores["sign_f1"] = count_score(
            _f1_counts(sign_probs >= 0.5, signs >= 0.5), _macro_f1(ignore_absent=False),
            resamples, seed, identity)
    return scores


def _kappa(a: Tensor, b: Tensor, num_classes: int) -> Tensor:
    """Cohen's kappa of two diagnoses; identical diagnoses agree perfectly (1), also when they
    are all one class, where the textbook formula is 0/0."""
    if torch.equal(a, b):
        return torch.tensor(1.0)
    return cohen_kappa(a, b, "multiclass", num_classes=num_classes, validate_args=False)


@torch.no_grad()
def utility_scores(deid: Tensor, split: TestSplit, clean: dict[str, Tensor],
                   evaluators: Evaluators, lesion_masks, *, classes, signs, resamples, seed,
                   device, batch_size) -> tuple[dict, dict, dict, dict]:
    """Disease, sign, kappa and Dice scores of the clean-trained evaluators on ``deid``;
    returns ``(scores, chance, clean references, per-sign F1)``."""
    test, c, n = split.attackable, len(classes), len(deid)
    out, dice = _Collector(), LesionDice()
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        images = deid[sl].to(device)
        probs, sign_probs = evaluators.classifier.predict(images, test.landmarks[sl].to(device))
        out.add(pred=probs.argmax(1), sign_probs=sign_probs)
        _lesion_dice(evaluators, split.rows[sl], images, lesion_masks, dice, device)
    pred, clean_pred = out.get("pred"), clean["clean_pred"]
    scores = diagnosis_scores(pred, out.get("sign_probs"), split, c, resamples, seed)
    scores["kappa"] = statistic_score(lambda i: _kappa(pred[i], clean_pred[i], c), n,
                                      resamples, seed, test.identity)
    chance = {"accuracy": float(torch.bincount(split.label, minlength=c).max()) / n}
    reference = diagnosis_scores(clean_pred, clean["clean_sign_probs"], split, c, resamples, seed)
    dice_rows = test.identity[[i for i, r in enumerate(split.rows.tolist()) if r in lesion_masks]]
    if len(dice.per_sample()):
        scores["dice"] = mean_score(dice.per_sample(), resamples, seed, dice_rows)
        reference["dice"] = mean_score(clean["clean_dice"], resamples, seed, dice_rows)
    per_sign = (multilabel_f1_score(out.get("sign_probs"), split.signs.long(), len(signs),
                                    average="none").tolist() if signs else [])
    return scores, chance, reference, dict(zip(signs, map(float, per_sign)))


# -- the attacks ------------------------------------------------------------------------------
def run_attacks(ctx: AttackContext, names: list[str], cache: AttackCache | None,
                progress: bool = True) -> tuple[dict[str, AttackResult], dict[str, float]]:
    """Run (or load from ``cache``) each named attack that applies to the method; returns
    the results and each attack's seconds."""
    results, seconds = {}, {}
    for name in names:
        attack = ATTACKS[name]
        if not attack.applies(ctx):
            continue
        if attack.needs_train and not ctx.train:
            log.warning("attack %s skipped: no attacker training data was given", name)
            continue
        start = time.perf_counter()
        path = cache.path(attack, attack.config_of(ctx)) if cache is not None else None
        result = cache.load(path) if cache is not None else None
        if result is None:
            if progress:
                print(f"attack {name}: {attack.description} ...", file=sys.stderr, flush=True)
            result = attack.run(ctx)
            if cache is not None:
                cache.save(path, result)
        results[name], seconds[name] = result, time.perf_counter() - start
    return results, seconds


def worst_case(scores: dict[str, Score]) -> str | None:
    """Name of the highest identity-protocol top-1 among the attacks' ``worst`` scores."""
    present = [n for n in worst_case_names() if n in scores and scores[n].value == scores[n].value]
    return max(present, key=lambda n: scores[n].value) if present else None


# -- one evaluation ---------------------------------------------------------------------------
def evaluate_method(method: DeIdMethod, test_loader, evaluators: Evaluators, *,
                    classes: list[str], signs: list[str], lesion_masks: dict[int, Tensor],
                    seed: int, device: torch.device, resamples: int = 1000,
                    grid_images: int = 8, progress: bool = True,
                    clean_cache: Path | None = None, attacks: list[str] | None = None,
                    attacker_data: dict[str, Tensor] | None = None,
                    attack_config: AttackConfig | None = None,
                    evaluator_config: EvaluatorConfig | None = None,
                    trainer_kwargs: dict | None = None,
                    attack_cache: AttackCache | None = None) -> Evaluation:
    """De-identify the test split once (blind), score utility, naturalness and cost, then run
    ``attacks`` (default: every attack; those that train need ``attacker_data``, the training
    split from :func:`attacker_training_data`). ``clean_cache``: file caching the evaluators'
    clean-test outputs; ``attack_cache``: where attack results are kept between runs."""
    attack_config = attack_config or AttackConfig()
    names = list(ATTACKS) if attacks is None else list(attacks)
    split = collect_test_split(test_loader)
    test, n, bits = split.attackable, len(split.rows), int(method.key_bits)
    batch_size = test_loader.batch_size or 64
    blinded = BlindedMethod(method, batch_size=batch_size, seed=seed, device=device)
    right = draw_keys(n, bits, stream(seed, "right keys"))
    _reset_peak_memory(device)
    if progress:
        print(f"de-identifying {n} test images with {method.name} ...", file=sys.stderr, flush=True)
    deid = blinded.anonymize(test.image, test.landmarks, right, timed=True)
    peak_mb = _peak_memory_mb(device)
    deid_other = (blinded.anonymize(test.image, test.landmarks,
                                    draw_keys(n, bits, stream(seed, "other keys")))
                  if bits else deid)
    clean = _checked_clean_outputs(test_loader, evaluators, split.rows, lesion_masks=lesion_masks,
                                   device=device, cache=clean_cache, progress=progress)
    scores, chance, reference, per_sign = utility_scores(
        deid, split, clean, evaluators, lesion_masks, classes=classes, signs=signs,
        resamples=resamples, seed=seed, device=device, batch_size=batch_size)
    natural = attack_config.naturalness
    scores["kid"] = kid_score(deid, test.float_images(), evaluators.identity,
                              subsets=natural.subsets, subset_size=natural.subset_size,
                              batch_size=batch_size, device=device, seed=seed)
    sizes = torch.tensor(blinded.batch_sizes, dtype=torch.float64)
    seconds = torch.tensor(blinded.seconds, dtype=torch.float64).clamp_min(1e-9)
    # throughput is resampled over batches, the unit anonymize() is timed in
    scores["images_per_s"] = statistic_score(
        lambda i: float(sizes[i].sum() / seconds[i].sum()), len(sizes), resamples, seed)

    grid_rows = torch.linspace(0, n - 1, min(grid_images, n)).long().unique()
    ctx = AttackContext(
        method=blinded, key_bits=bits, reversible=bool(method.reversible),
        train=attacker_data or {}, test=test, deid=deid, deid_other=deid_other,
        right_keys=right, evaluators=evaluators, clean_emb=clean["clean_emb"],
        config=attack_config, evaluator_config=evaluator_config, seed=seed, device=device,
        resamples=resamples, batch_size=batch_size, trainer_kwargs=dict(trainer_kwargs or {}),
        grid_rows=grid_rows)
    results, attack_seconds = run_attacks(ctx, names, attack_cache, progress)
    grid = {"original": test.float_images()[grid_rows], "de-identified": deid[grid_rows]}
    for result in results.values():
        scores.update(result.scores)
        chance.update(result.chance)
        reference.update(result.clean)
        grid.update(result.grid)
    worst = worst_case(scores)
    if worst is not None:
        scores["reid_worst"], chance["reid_worst"] = scores[worst], chance[worst]
        if "reid_top1_identity" in reference:
            reference["reid_worst"] = reference["reid_top1_identity"]
    cost = {"images_per_s": n / float(seconds.sum()), "anonymize_s": float(seconds.sum()),
            "peak_memory_mb": peak_mb, "attack_seconds": attack_seconds}
    return Evaluation(scores, chance, reference, per_sign, cost, n, grid,
                      {"reid_worst_of": worst, "attacks": list(results)})


def attack_cache(method: DeIdMethod, method_cache: Path, fingerprint: str,
                 evaluators: Evaluators, profile, seed: int) -> AttackCache:
    """Where ``method``'s attack results are kept: keyed by its fitted state (the cache file
    :func:`benchmark.run.fit_or_load` wrote, whose name hashes profile, seed and config), the
    dataset, the evaluators' checkpoints, the image size, seed and bootstrap resamples; the
    file's size and time too, so a refit method is attacked afresh."""
    from benchmark.leaderboard import safe_name
    from data.paths import cache_root

    stamp = evaluators.clean_cache_path(fingerprint, profile.image_size)
    state = Path(method_cache).stat()  # a refit rewrites the file: its results are new
    return AttackCache(cache_root() / "attacks" / safe_name(method.name), {
        "method": Path(method_cache).name, "method_config": method.config(),
        "method_state": f"{state.st_size}:{state.st_mtime_ns}",
        "fingerprint": fingerprint, "evaluators": stamp.name if stamp else None,
        "evaluator_config": profile.evaluators.digest(),
        "image_size": profile.image_size, "seed": seed,
        "resamples": profile.bootstrap_resamples})
