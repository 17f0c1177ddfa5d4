"""The genre feedforward network: Linear, BatchNorm1d, ReLU, Dropout blocks and a linear head.

With `num_members > 1` the model is an ensemble of independent networks served as
one: each member sees the same inputs, is trained on its own cross-entropy, and
the output logits are the log of the members' mean probabilities. With
`config.inference_dtype = "bfloat16"` the members compute in bfloat16 in eval mode
where the hardware has native bfloat16 (see `native_bfloat16`), in float32 otherwise.
"""

import copy
from functools import cache

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_linear_bn_eval
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_genre_ffn import GenreFFNConfig


class GenreFFNNetwork(nn.Sequential):
    """One member: a block per hidden size, then a Linear to the genre logits."""

    def __init__(self, config: GenreFFNConfig):
        layers: list[nn.Module] = []
        width = config.input_size
        for hidden in config.hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        layers.append(nn.Linear(width, config.num_labels))
        super().__init__(*layers)


class GenreFFNPreTrainedModel(PreTrainedModel):
    config_class = GenreFFNConfig
    base_model_prefix = "genre_ffn"
    main_input_name = "input_features"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm1d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


# Rows per slice when a large table is classified: each activation then stays in the CPU cache.
INFERENCE_CHUNK = 1024
EXPLAIN_NEEDS_CAPTUM = "explain=True needs captum (Integrated Gradients): pip install captum"


class GenreFFNForSequenceClassification(GenreFFNPreTrainedModel):
    def __init__(self, config: GenreFFNConfig):
        super().__init__(config)
        self.members = nn.ModuleList(GenreFFNNetwork(config) for _ in range(config.num_members))
        weights = torch.tensor(config.class_weights, dtype=torch.float32) if config.class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)
        self.post_init()

    def train(self, mode: bool = True) -> "GenreFFNForSequenceClassification":
        self.__dict__.pop("_folded_members", None)  # switching modes drops the folded copies (see `_folded`)
        return super().train(mode)

    def forward(
        self,
        input_features: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple:
        if input_features.shape[-1] != self.config.input_size:
            raise ValueError(
                f"input_features has {input_features.shape[-1]} columns but this model takes {self.config.input_size}: "
                "encode raw rows with the feature extractor saved with the model"
            )
        member_logits = [self._run_member(member, input_features) for member in self.members]
        logits = _ensemble_logits(member_logits)
        if not self.training and self.config.calibration_temperature != 1.0:
            # Calibration fitted after training: the loss never sees it, and dividing by T > 0 keeps every argmax.
            logits = logits / self.config.calibration_temperature

        loss = None
        if labels is not None:
            loss_fn = nn.CrossEntropyLoss(weight=self.class_weights, label_smoothing=self.config.label_smoothing)
            # Each member learns on its own loss, so the ensemble stays a set of independent networks.
            loss = torch.stack([loss_fn(z, labels) for z in member_logits]).mean()

        if return_dict is False:
            return (loss, logits) if loss is not None else (logits,)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def integrated_gradients(
        self, input_features: torch.Tensor, reference: torch.Tensor, targets: torch.Tensor, n_steps: int = 64
    ) -> torch.Tensor:
        """Integrated Gradients (captum) of each row's probability of genre `targets[i]`, per encoded column, along
        the straight path from `reference` (one encoded row) to the row; they sum to p(row) - p(reference).

        Computed in float32 on the members themselves in eval mode (never the folded bfloat16 copies, whose coarse
        gradients would break the completeness above), with the model's temperature, on the model's device.
        """
        try:
            from captum.attr import IntegratedGradients
        except ImportError:
            raise ImportError(EXPLAIN_NEEDS_CAPTUM) from None

        def probability(features: torch.Tensor) -> torch.Tensor:
            logits = _ensemble_logits([member(features) for member in self.members])
            return (logits / self.config.calibration_temperature).softmax(dim=-1)

        if self.training:
            raise ValueError("integrated_gradients explains the eval-mode model: call model.eval() first")
        features = input_features.detach().float().to(self.device)
        baseline = reference.detach().float().to(self.device).reshape(1, -1).expand_as(features)
        with torch.enable_grad():
            return IntegratedGradients(probability).attribute(
                features,
                baselines=baseline,
                target=targets.long().to(self.device),
                n_steps=n_steps,
                internal_batch_size=INFERENCE_CHUNK * 8,
            )

    def _compute_dtype(self, device: torch.device) -> torch.dtype:
        if self.training or self.config.inference_dtype != "bfloat16" or not native_bfloat16(device.type):
            return torch.float32
        return torch.bfloat16

    def _run_member(self, member: GenreFFNNetwork, input_features: torch.Tensor) -> torch.Tensor:
        dtype = self._compute_dtype(input_features.device)
        if self.training or (dtype == torch.float32 and len(input_features) <= INFERENCE_CHUNK):
            return member(input_features)
        # Eval rows are independent (BatchNorm uses its running statistics), so slicing changes no result.
        folded = self._folded(member, dtype)
        chunks = input_features.to(dtype).split(INFERENCE_CHUNK)
        return torch.cat([folded(chunk) for chunk in chunks]).float()

    def _folded(self, member: GenreFFNNetwork, dtype: torch.dtype) -> nn.Sequential:
        """The member folded for inference, rebuilt whenever one of its tensors has been replaced or changed in place
        (the key holds each tensor's storage and version counter). A write through `.data` bypasses the counter:
        `model.eval()` (or `train()`) after such a write drops the folded copies."""
        # The member's layers hold their tensors directly (no nested modules): read them without a module walk.
        tensors = [t for layer in member for t in (*layer._parameters.values(), *layer._buffers.values())]
        try:
            key = (dtype, *((t.data_ptr(), t._version) for t in tensors if t is not None))
        except RuntimeError:  # inference tensors (a model built under torch.inference_mode) have no version counter
            return fold_batch_norm(member, dtype)
        folded_members = self.__dict__.setdefault("_folded_members", {})  # a plain dict: never saved or a submodule
        cached = folded_members.get(id(member))
        if cached is None or cached[0] != key:
            cached = folded_members[id(member)] = (key, fold_batch_norm(member, dtype))
        return cached[1]


def _ensemble_logits(member_logits: list[torch.Tensor]) -> torch.Tensor:
    """One member's logits as they are; several members' as the log of their mean probabilities."""
    if len(member_logits) == 1:
        return member_logits[0]
    log_probs = torch.stack([torch.log_softmax(z, dim=-1) for z in member_logits])
    return torch.logsumexp(log_probs, dim=0) - torch.log(torch.tensor(float(len(member_logits))))


@cache
def native_bfloat16(device_type: str) -> bool:
    """Whether this machine computes bfloat16 matrix products natively on `device_type` ("cpu" or "cuda").

    Without it (e.g. a CPU with AVX2 only) bfloat16 is emulated and slower than float32, so the model stays in float32.
    """
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        try:
            return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def fold_batch_norm(member: GenreFFNNetwork, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """The eval-mode network with each BatchNorm folded into the Linear before it, Dropout (an identity) left out,
    and the weights in `dtype`.

    Built from the current weights (`_folded` caches it until they change); the member itself is never modified.
    """
    layers, modules = [], list(member)
    for i, module in enumerate(modules):
        if isinstance(module, nn.BatchNorm1d | nn.Dropout):
            continue
        if isinstance(module, nn.Linear):
            if i + 1 < len(modules) and isinstance(modules[i + 1], nn.BatchNorm1d):
                module = fuse_linear_bn_eval(module, modules[i + 1])  # a new Linear
            elif module.weight.dtype != dtype:
                module = copy.deepcopy(module)
            module = module.to(dtype)
        layers.append(module)
    return nn.Sequential(*layers)
