"""The base of every method whose ``fit`` trains torch networks (the training kit;
docs/plugins.md): its config from a preset, the paths of its cached stages, the save/load/move
of its fitted networks and chunked CPU-friendly inference, written once.

A subclass names its fitted networks in ``networks`` and its configs in ``presets`` (profile ->
a :class:`MethodConfig` dataclass) and implements :meth:`build_networks`, ``fit`` and
``anonymize`` (and ``recover``); everything else here applies unchanged, and bumps
``fit_recipe`` when its code learns something else from the same config. Plugins may import
this module (README, import rule).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn

from . import DeIdMethod
from .training import save_stage, stage_path


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Base of a fitted method's hyper-parameter dataclass (frozen: a config is a cache key)."""

    def replace(self, **changes) -> "MethodConfig":
        """A copy with ``changes``; unknown names are refused, and a list (from a command line
        or a JSON config) given for a tuple field becomes a tuple, a single number (a
        ``--sweep`` value) a tuple of one."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)} for {type(self).__name__}")
        changes = {k: _as_tuple(v) if isinstance(getattr(self, k), tuple) else v
                   for k, v in changes.items()}
        return dataclasses.replace(self, **changes)


def _as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def preset(presets: dict[str, MethodConfig], profile: str, **options) -> MethodConfig:
    """The preset for ``profile`` with ``options`` overriding single fields."""
    if profile not in presets:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(presets)}")
    return presets[profile].replace(**options)


class FittedMethod(DeIdMethod):
    """A de-identifier made of networks that :meth:`fit` trains.

    ``state_dict()`` is ``{"config": ..., **extra_state(), <network>: its tensors, ...}``: tensors
    and plain values only, so the harness's cache reads it with ``weights_only=True``.
    Options (keyword, after the contract's ``profile``/``seed``/``work_dir``/``trainer_kwargs``)
    override single fields of the profile's config.
    """

    #: attribute names of the fitted ``nn.Module``s; ``state_dict`` saves each under its name
    networks: tuple[str, ...] = ()
    #: profile -> config (:class:`MethodConfig`); :meth:`make_config` picks one
    presets: dict[str, MethodConfig] = {}
    #: images per forward pass in :meth:`run_chunked`
    chunk_size = 256
    #: bump when the code learns something else from the same config (a changed network or
    #: loss), so that a cached fit of the older code is not reused; part of :meth:`config`
    fit_recipe = 1

    def __init__(self, *, profile: str = "quick", seed: int = 0, work_dir=None,
                 trainer_kwargs=None, **options):
        super().__init__(profile=profile, seed=seed, work_dir=work_dir,
                         trainer_kwargs=trainer_kwargs)
        self.cfg = self.make_config(profile, **options)
        for name in self.networks:
            setattr(self, name, None)

    # -- what a subclass defines ---------------------------------------------------------------
    def make_config(self, profile: str, **options) -> Any:
        """The config dataclass of ``profile`` with ``options`` overriding single fields."""
        return preset(self.presets, profile, **options)

    def build_networks(self) -> dict[str, nn.Module]:
        """Fresh (untrained) networks, one per name in ``networks``, from the config and the
        extra state (which :meth:`load_state_dict` restores first)."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        """Values besides the networks that a fitted method needs (sizes, a template face)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state` (before :meth:`build_networks` runs)."""

    def config(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.cfg), "fit_recipe": self.fit_recipe}

    # -- training helpers ----------------------------------------------------------------------
    @property
    def smoke_run(self) -> bool:
        """``fast_dev_run`` trains one batch: such a fit is never cached."""
        return bool(self.trainer_kwargs.get("fast_dev_run"))

    def stage_path(self, stage: str, fields: Iterable[str] | None,
                   fingerprint: str) -> Path | None:
        """Where the stage ``stage`` is cached under ``work_dir``, keyed by the config
        ``fields`` it depends on (``None``: all of them), the seed and the data; ``None``
        without a ``work_dir``."""
        config = self.config()
        if fields is not None:
            config = {k: config[k] for k in fields}
        return stage_path(self.work_dir, stage, config, self.seed, fingerprint)

    def set_networks(self, **networks: nn.Module) -> None:
        """Install trained networks: on the CPU, in eval mode, then moved to ``self.device``."""
        for name, network in networks.items():
            setattr(self, name, network.cpu().eval())
        self.to(self.device)

    def save_fitted(self, path: Path | None) -> None:
        """Cache the fitted method at ``path`` (nothing for ``None`` or a smoke run)."""
        if path is not None and not self.smoke_run:
            save_stage(self.state_dict(), path)

    # -- the contract's caching ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self.require_fitted()
        nets = {name: {k: v.cpu() for k, v in getattr(self, name).state_dict().items()}
                for name in self.networks}
        return {"config": self.config(), **self.extra_state(), **nets}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("config") != self.config():
            raise ValueError(f"{self.name}: checkpoint was fitted with a different config "
                             f"({state.get('config')}) than this method ({self.config()})")
        self.load_extra_state(state)
        networks = self.build_networks()
        for name, network in networks.items():
            network.load_state_dict(state[name])
        self.set_networks(**networks)

    def to(self, device) -> "FittedMethod":
        super().to(device)
        for name in self.networks:
            if getattr(self, name) is not None:
                getattr(self, name).to(self.device)
        return self

    # -- inference helpers ---------------------------------------------------------------------
    def require_fitted(self) -> None:
        if any(getattr(self, name) is None for name in self.networks):
            raise RuntimeError(f"{self.name}: call fit() or load_state_dict() first")

    def checked_keys(self, keys: Tensor | None, count: int) -> Tensor:
        """The ``[count, key_bits]`` keys, checked; without keys (the harness always passes
        them) reproducible ones drawn from the method seed."""
        if keys is None:
            generator = torch.Generator().manual_seed(self.seed)
            keys = torch.randint(0, 2, (count, self.key_bits), generator=generator)
        if tuple(keys.shape) != (count, self.key_bits):
            raise ValueError(f"{self.name}: keys must be [{count}, {self.key_bits}], "
                             f"got {tuple(keys.shape)}")
        return keys

    def run_chunked(self, fn: Callable[..., Tensor], *tensors: Tensor) -> Tensor:
        """``fn`` over ``chunk_size`` slices of ``tensors`` (dim 0) on ``self.device``, without
        autograd, the networks and images channels-last (oneDNN's convolutions run markedly
        faster on a CPU that way); the results concatenated on the first tensor's device."""
        self.require_fitted()
        for name in self.networks:
            getattr(self, name).to(memory_format=torch.channels_last).eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(tensors[0]), self.chunk_size):
                out.append(fn(*(self._on_device(t[start:start + self.chunk_size])
                                for t in tensors)).cpu())
        return torch.cat(out).contiguous().to(tensors[0].device)

    def _on_device(self, tensor: Tensor) -> Tensor:
        if tensor.is_floating_point():
            tensor = tensor.to(self.device, torch.float32)
        else:
            tensor = tensor.to(self.device)
        if tensor.dim() == 4:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor
