"""The genre feedforward network: Linear, BatchNorm1d, ReLU, Dropout blocks and a linear head, as an ensemble.

`config.ensemble` says how the `num_members` networks are made:

- `"independent"`: separate networks, each with its own weights;
- `"tabm"`: TabM's parameter-efficient ensemble (Gorishniy et al., ICLR 2025, after BatchEnsemble): the members share
  every weight matrix, and each Linear scales its input and output per member and adds a bias per member,
  y_i = ((x * r_i) W^T) * s_i + b_i; each member has its own BatchNorm statistics and its own head;
- `"tabm-mini"`: the members share every Linear and differ by a scaling of the input (r_i), their BatchNorm and
  their head.

In all three, every member sees the same batch, the loss is the mean of the members' cross-entropies, and the
logits served are the log of the members' mean probabilities. With `config.numeric_embedding` the numeric columns of
`input_features` are embedded first, by one module the members share (piecewise-linear over quantile bins stored
in `config.embedding_bins`, or periodic); the key's one-hot and the mode pass through unchanged.

In eval mode, tables of more than `INFERENCE_CHUNK` rows (and, with `config.inference_dtype = "bfloat16"` where the
hardware has native bfloat16, every call) run through a folded copy of the members: BatchNorm folded into the
Linear before it, Dropout left out. The copy is made at the first such call after `eval()`, `train()`,
`load_state_dict` or `refresh_inference_copy()`, and follows the parameters to another device or dtype; after
changing weights in place in eval mode, call `model.refresh_inference_copy()` (or `model.eval()`).
"""

import copy
import math
from functools import cache

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_linear_bn_eval
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_genre_ffn import GenreFFNConfig, numeric_columns


class GenreFFNNetwork(nn.Sequential):
    """One independent member: a block per hidden size, then a Linear to the genre logits."""

    def __init__(self, config: GenreFFNConfig, input_width: int | None = None):
        layers: list[nn.Module] = []
        width = config.input_size if input_width is None else input_width
        for hidden in config.hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        layers.append(nn.Linear(width, config.num_labels))
        super().__init__(*layers)


class BatchEnsembleLinear(nn.Module):
    """A Linear whose weight matrix the k members share: member i computes ((x_i * r_i) W^T) * s_i + b_i.

    Input and output are (rows, k, features). `input_chunks` (first layer only) groups the input columns whose r
    starts equal (one value per feature, as TabM initialises it); other layers start with r = s = 1."""

    def __init__(self, in_features: int, out_features: int, num_members: int, input_chunks: list[int] | None = None):
        super().__init__()
        self.in_features, self.out_features, self.input_chunks = in_features, out_features, input_chunks
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.r = nn.Parameter(torch.empty(num_members, in_features))
        self.s = nn.Parameter(torch.empty(num_members, out_features))
        self.bias = nn.Parameter(torch.empty(num_members, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias, (x * self.r) @ self.weight.T, self.s)


class MemberScaling(nn.Module):
    """TabM-mini's one member-specific weight: the input scaled per member, (rows, in) -> (rows, k, in)."""

    def __init__(self, in_features: int, num_members: int, input_chunks: list[int]):
        super().__init__()
        self.input_chunks = input_chunks
        self.r = nn.Parameter(torch.empty(num_members, in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(-2) * self.r


class MemberBatchNorm(nn.BatchNorm1d):
    """BatchNorm over each member's own activations: (rows, k, width) normalised as k * width features, so a member's
    statistics and affine weights are its own, as an independent member's would be."""

    def __init__(self, num_members: int, width: int):
        super().__init__(num_members * width)
        self.num_members, self.width = num_members, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(-2)).view_as(x)


class EnsembleHead(nn.Module):
    """One Linear head per member: (rows, k, width) -> (k, rows, labels), members first."""

    def __init__(self, in_features: int, out_features: int, num_members: int):
        super().__init__()
        self.in_features = in_features
        self.weight = nn.Parameter(torch.empty(num_members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(num_members, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x.transpose(0, 1), self.weight)


class BatchEnsembleNetwork(nn.Module):
    """The k members of a TabM ensemble (`"tabm"` or `"tabm-mini"`), computed at once: (rows, in) -> (k, rows, labels).

    The blocks are the paper's (Linear, BatchNorm, ReLU, Dropout) with the Linear shared by the members, and the
    BatchNorm per member (`MemberBatchNorm`): each member normalises its own activations, which differ by its
    scalings, so its statistics, like an independent member's, describe what it computes."""

    def __init__(self, config: GenreFFNConfig, input_width: int, input_chunks: list[int]):
        super().__init__()
        k, mini = config.num_members, config.ensemble == "tabm-mini"
        self.scaling = MemberScaling(input_width, k, input_chunks) if mini else None
        blocks, width = [], input_width
        for i, hidden in enumerate(config.hidden_sizes):
            linear = (
                nn.Linear(width, hidden)
                if mini
                else BatchEnsembleLinear(width, hidden, k, input_chunks if i == 0 else None)
            )
            blocks.append(nn.Sequential(linear, MemberBatchNorm(k, hidden), nn.ReLU(), nn.Dropout(config.dropout)))
            width = hidden
        self.blocks = nn.ModuleList(blocks)
        self.head = EnsembleHead(width, config.num_labels, k)
        self.num_members = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (rows, 1, in) broadcasts against each member's first scaling to (rows, k, in)
        x = self.scaling(x) if self.scaling is not None else x.unsqueeze(-2)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class PiecewiseLinearEmbedding(nn.Module):
    """Piecewise-linear embeddings of numeric columns (Gorishniy et al., 2022; rtdl_num_embeddings'
    `PiecewiseLinearEmbeddings`, version "B" without activation, as TabM uses them): each column's value x gets a
    linear embedding plus a learned map of its piecewise-linear encoding over the column's bins, the map zero at
    initialisation. The encoding of x in bin t is 1 for the bins below, (x - left edge) / width in its own, 0 above;
    the first and last bins extrapolate. (rows, n) -> (rows, n, size).

    The bins are the config's (fitted on training rows); the encoding's constants are derived from them, not saved.
    """

    def __init__(self, bins: list[list[float]], size: int):
        super().__init__()
        self.bins, n, most = bins, len(bins), max(len(edges) - 1 for edges in bins)
        self.linear_weight = nn.Parameter(torch.empty(n, size))
        self.linear_bias = nn.Parameter(torch.empty(n, size))
        self.weight = nn.Parameter(torch.empty(n, most, size))
        for name in ("scale", "shift", "lower", "upper"):
            self.register_buffer(name, torch.empty(n, most), persistent=False)
        self.set_encoding()

    @torch.no_grad()
    def set_encoding(self) -> None:
        """The encoding as one affine map and a clamp per component: a column with c bins fills components
        0..c-2 and the last one, so every column's last bin is in the same place (zeros in between)."""
        scale, shift = torch.zeros_like(self.scale), torch.zeros_like(self.shift)
        lower, upper = torch.zeros_like(self.lower), torch.ones_like(self.upper)
        lower[:, 0], upper[:, -1] = -math.inf, math.inf  # the first bin extrapolates down, the last up
        for i, edges in enumerate(self.bins):
            edges = torch.tensor(edges, dtype=torch.float64)
            width = edges.diff()
            places = [*range(len(width) - 1), scale.shape[1] - 1]
            scale[i, places] = (1 / width).float()
            shift[i, places] = (-edges[:-1] / width).float()
            if len(width) == 1:  # one bin: a min-max scaling, unclamped
                lower[i, -1] = -math.inf
        for name, value in (("scale", scale), ("shift", shift), ("lower", lower), ("upper", upper)):
            getattr(self, name).copy_(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        linear = torch.addcmul(self.linear_bias, self.linear_weight, x.unsqueeze(-1))
        encoded = torch.clamp(torch.addcmul(self.shift, self.scale, x.unsqueeze(-1)), self.lower, self.upper)
        return linear + (encoded.transpose(0, 1) @ self.weight).transpose(0, 1)


class PeriodicEmbedding(nn.Module):
    """Periodic embeddings of numeric columns (rtdl_num_embeddings' `PeriodicEmbeddings`, not lite): per column,
    cos and sin of 2 pi f x for learned frequencies f (initialised from N(0, scale^2)), a Linear of the column's own,
    then ReLU. (rows, n) -> (rows, n, size)."""

    def __init__(self, n: int, size: int, frequencies: int, scale: float):
        super().__init__()
        self.scale = scale
        self.frequencies = nn.Parameter(torch.empty(n, frequencies))
        self.weight = nn.Parameter(torch.empty(n, 2 * frequencies, size))
        self.bias = nn.Parameter(torch.empty(n, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * self.frequencies * x.unsqueeze(-1)
        waves = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
        return torch.relu((waves.transpose(0, 1) @ self.weight).transpose(0, 1) + self.bias)


def _fresh(tensor: torch.Tensor) -> bool:
    """Whether `tensor` still needs its initial values (from_pretrained marks the ones it loaded)."""
    return not getattr(tensor, "_is_hf_initialized", False)


@torch.no_grad()
def _init_scaling(r: nn.Parameter, chunks: list[int] | None, distribution: str) -> None:
    """TabM's first scaling: one draw per feature (a chunk of columns) and member, random signs or N(0, 1)."""
    if chunks is None:
        nn.init.ones_(r)
        return
    draws = torch.empty(r.shape[0], len(chunks), device=r.device)
    draws = draws.bernoulli_(0.5).mul_(2).sub_(1) if distribution == "random-signs" else draws.normal_()
    r.copy_(draws.repeat_interleave(torch.tensor(chunks, device=r.device), dim=1))


class GenreFFNPreTrainedModel(PreTrainedModel):
    config_class = GenreFFNConfig
    base_model_prefix = "genre_ffn"
    main_input_name = "input_features"

    def _init_weights(self, module: nn.Module) -> None:
        # Each tensor is set only while fresh: from_pretrained calls this for any module holding a tensor it did not
        # load (the derived, unsaved buffers below), and the loaded weights must stay.
        constants = {  # parameters that start from a constant
            BatchEnsembleLinear: {"s": 1.0, "bias": 0.0},
            EnsembleHead: {"bias": 0.0},
            PiecewiseLinearEmbedding: {"weight": 0.0},  # the piecewise-linear part starts at zero (version "B")
        }.get(type(module), {})
        if isinstance(module, nn.Linear | BatchEnsembleLinear) and _fresh(module.weight):
            nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
        if isinstance(module, nn.Linear) and module.bias is not None and _fresh(module.bias):
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm1d):
            if _fresh(module.weight):
                nn.init.ones_(module.weight)
            if _fresh(module.bias):
                nn.init.zeros_(module.bias)
        elif isinstance(module, BatchEnsembleLinear | MemberScaling) and _fresh(module.r):
            embedded = self.config.numeric_embedding is not None
            _init_scaling(module.r, module.input_chunks, "normal" if embedded else "random-signs")
        elif isinstance(module, EnsembleHead) and _fresh(module.weight):
            bound = math.sqrt(6 / module.in_features)  # kaiming_uniform for ReLU, as each member's own Linear
            nn.init.uniform_(module.weight, -bound, bound)
        elif isinstance(module, PiecewiseLinearEmbedding):
            module.set_encoding()
            bound = module.linear_weight.shape[1] ** -0.5
            for tensor in (module.linear_weight, module.linear_bias):
                if _fresh(tensor):
                    nn.init.uniform_(tensor, -bound, bound)
        elif isinstance(module, PeriodicEmbedding):
            if _fresh(module.frequencies):
                nn.init.trunc_normal_(module.frequencies, 0.0, module.scale, -3 * module.scale, 3 * module.scale)
            bound = module.weight.shape[1] ** -0.5
            for tensor in (module.weight, module.bias):
                if _fresh(tensor):
                    nn.init.uniform_(tensor, -bound, bound)
        elif isinstance(module, GenreFFNForSequenceClassification) and module.class_weights is not None:
            module.class_weights.copy_(torch.tensor(self.config.class_weights, dtype=torch.float32))
        for name, value in constants.items():
            if _fresh(getattr(module, name)):
                nn.init.constant_(getattr(module, name), value)


# Rows per slice when a large table is classified: each activation then stays in the CPU cache.
INFERENCE_CHUNK = 1024
EXPLAIN_NEEDS_CAPTUM = "explain=True needs captum (Integrated Gradients): pip install captum"


def _drop_inference_copy(module: "GenreFFNForSequenceClassification", incompatible_keys) -> None:
    module.refresh_inference_copy()


class GenreFFNForSequenceClassification(GenreFFNPreTrainedModel):
    def __init__(self, config: GenreFFNConfig):
        super().__init__(config)
        numeric = numeric_columns(config.input_size)
        width, chunks = config.input_size, [1] * numeric
        if config.numeric_embedding == "piecewise-linear":
            self.numeric_embedding = PiecewiseLinearEmbedding(config.embedding_bins, config.embedding_size)
        elif config.numeric_embedding == "periodic":
            self.numeric_embedding = PeriodicEmbedding(
                numeric, config.embedding_size, config.periodic_frequencies, config.periodic_scale
            )
        if config.numeric_embedding is not None:
            width, chunks = config.input_size + numeric * (config.embedding_size - 1), [config.embedding_size] * numeric
        chunks += [config.input_size - numeric - 1, 1]  # the key's one-hot columns vary together; the mode
        if config.ensemble == "independent":
            self.members = nn.ModuleList(GenreFFNNetwork(config, width) for _ in range(config.num_members))
        else:
            self.ensemble = BatchEnsembleNetwork(config, width, chunks)
        weights = torch.tensor(config.class_weights, dtype=torch.float32) if config.class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)
        self.register_load_state_dict_post_hook(_drop_inference_copy)
        self.post_init()

    def train(self, mode: bool = True) -> "GenreFFNForSequenceClassification":
        self.refresh_inference_copy()  # eval() and train() both come here
        return super().train(mode)

    def refresh_inference_copy(self) -> None:
        """Drop the folded inference copy; the next eval call that needs one folds the current weights.

        `eval()`, `train()` and `load_state_dict` call it; call it yourself after changing weights in place while
        the model is in eval mode (an optimizer step, or a write under `torch.no_grad()`)."""
        self.__dict__.pop("_inference_copies", None)

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
        member_logits = self._served_member_logits(input_features)
        logits = _ensemble_logits(member_logits)
        if not self.training and self.config.calibration_temperature != 1.0:
            # Calibration fitted after training: the loss never sees it, and dividing by T > 0 keeps every argmax.
            logits = logits / self.config.calibration_temperature

        loss = None
        if labels is not None:
            loss_fn = nn.CrossEntropyLoss(weight=self.class_weights, label_smoothing=self.config.label_smoothing)
            # The mean of the members' own losses: each member learns to classify on its own (TabM trains its k
            # members the same way), rather than the ensemble's average learning to.
            loss = torch.stack([loss_fn(z, labels) for z in member_logits]).mean()

        if return_dict is False:
            return (loss, logits) if loss is not None else (logits,)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def member_logits(self, input_features: torch.Tensor) -> torch.Tensor:
        """Each member's logits, (members, rows, labels), computed by the modules themselves (never the folded copy,
        no temperature)."""
        features = self._embed(input_features)
        if self.config.ensemble == "independent":
            return torch.stack([member(features) for member in self.members])
        return self.ensemble(features)

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
            logits = _ensemble_logits(self.member_logits(features))
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

    def _embed(self, input_features: torch.Tensor) -> torch.Tensor:
        """`input_features` with its numeric columns replaced by their embeddings (flattened), if any."""
        if self.config.numeric_embedding is None:
            return input_features
        numeric = numeric_columns(self.config.input_size)
        embedded = self.numeric_embedding(input_features[:, :numeric]).flatten(1)
        return torch.cat([embedded, input_features[:, numeric:]], dim=1)

    def _compute_dtype(self, device: torch.device) -> torch.dtype:
        if self.training or self.config.inference_dtype != "bfloat16" or not native_bfloat16(device.type):
            return torch.float32
        return torch.bfloat16

    def _served_member_logits(self, input_features: torch.Tensor) -> torch.Tensor:
        dtype = self._compute_dtype(input_features.device)
        if self.training or (dtype == torch.float32 and len(input_features) <= INFERENCE_CHUNK):
            return self.member_logits(input_features)
        # Eval rows are independent (BatchNorm uses its running statistics), so slicing changes no result.
        chunks = [self._embed(chunk).to(dtype) for chunk in input_features.split(INFERENCE_CHUNK)]
        return self._inference_copy(dtype).over_chunks(chunks).float()

    def _inference_copy(self, dtype: torch.dtype) -> "FoldedMembers":
        """The members folded for inference in `dtype`, made once and kept until `refresh_inference_copy` (see the
        module's docstring); made again if a parameter has moved to other memory (another device or dtype)."""
        copies = self.__dict__.setdefault("_inference_copies", {})  # a plain attribute: never saved, not a submodule
        cached = copies.get(dtype)
        if cached is None or any(p.data_ptr() != pointer for p, pointer in cached[0]):
            parameters = [(p, p.data_ptr()) for p in self.parameters()]
            cached = copies[dtype] = (parameters, FoldedMembers(self, dtype))
        return cached[1]


class FoldedMembers:
    """Every member in eval mode with BatchNorm folded into the Linear before it and Dropout left out, weights in
    `dtype`: (rows, in) -> (members, rows, labels). Built from the weights at the time; the model is not modified."""

    def __init__(self, model: GenreFFNForSequenceClassification, dtype: torch.dtype):
        if model.config.ensemble == "independent":
            self.members = [fold_batch_norm(member, dtype) for member in model.members]
        else:
            self.members = None
            self.layers, self.head = fold_batch_ensemble(model.ensemble, dtype)

    def over_chunks(self, chunks: list[torch.Tensor]) -> torch.Tensor:
        """The members' logits for the rows of every chunk, (members, rows, labels). Independent members run one
        after the other over all chunks, so each member's weights stay in the CPU cache while it runs."""
        if self.members is not None:
            return torch.stack([torch.cat([member(chunk) for chunk in chunks]) for member in self.members])
        return torch.cat([self(chunk) for chunk in chunks], dim=1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.members is not None:
            return torch.stack([member(x) for member in self.members])
        (weight, _, s, b), *layers = self.layers
        # The first layer's r is folded into k stacked matrices: one product for every member, (rows, k * out).
        x = torch.relu(torch.addcmul(b, (x @ weight.T).view(len(x), *s.shape), s))
        for weight, r, s, b in layers:
            x = torch.relu(torch.addcmul(b, (x if r is None else x * r) @ weight.T, s))
        head_weight, head_bias = self.head
        return torch.baddbmm(head_bias.unsqueeze(1), x.transpose(0, 1), head_weight)


def _ensemble_logits(member_logits: torch.Tensor) -> torch.Tensor:
    """One member's logits as they are; several members' as the log of their mean probabilities."""
    if len(member_logits) == 1:
        return member_logits[0]
    log_probs = torch.log_softmax(member_logits, dim=-1)
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

    Built from the current weights (the model keeps it until `refresh_inference_copy`); the member is not modified.
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


@torch.no_grad()
def fold_batch_ensemble(
    network: BatchEnsembleNetwork, dtype: torch.dtype = torch.float32
) -> tuple[list[tuple], tuple[torch.Tensor, torch.Tensor]]:
    """A TabM ensemble's blocks as (W, r or None, s, b) in `dtype`, each computing relu(((x * r) W^T) * s + b) with
    the member's BatchNorm folded into its s and b (the first block's r folded into W: the k matrices W * r_i
    stacked, r None); and the head's (weight, bias)."""
    layers = []
    for i, block in enumerate(network.blocks):
        linear, norm = block[0], block[1]
        gain = (norm.weight / torch.sqrt(norm.running_var + norm.eps)).view(norm.num_members, norm.width)
        offset = norm.bias.view_as(gain) - norm.running_mean.view_as(gain) * gain
        if isinstance(linear, BatchEnsembleLinear):
            r, s, b = linear.r, linear.s * gain, linear.bias * gain + offset
        else:  # tabm-mini: a shared Linear, the input scaled per member before the first
            r = network.scaling.r if i == 0 else None
            s, b = gain, linear.bias * gain + offset
        weight = linear.weight
        if i == 0:
            weight, r = (linear.weight.unsqueeze(0) * r.unsqueeze(1)).flatten(0, 1), None
        layers.append(tuple(None if t is None else t.detach().to(dtype).clone() for t in (weight, r, s, b)))
    head = (network.head.weight.detach().to(dtype).clone(), network.head.bias.detach().to(dtype).clone())
    return layers, head
