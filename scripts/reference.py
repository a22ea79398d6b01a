"""Reference computations shared by the fixture scripts, written once: NormalFloat codebooks as
bitsandbytes builds them, LQ-LoRA's blockwise grid quantizer, and transformers' perplexity loop.

Imported by scripts/make-*-fixtures.py and scripts/compare-eval.py (they put scripts/ on sys.path);
it needs torch and scipy, never lqlora.
"""
import scipy.stats
import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def normal_float_codebook(bits, offset=0.9677083):
    """bitsandbytes create_normal_map generalised to k bits (use_extra_value=True)."""
    half = 2 ** (bits - 1)
    v1 = scipy.stats.norm.ppf(torch.linspace(offset, 0.5, half + 1)[:-1]).tolist()
    v3 = (-scipy.stats.norm.ppf(torch.linspace(offset, 0.5, half)[:-1])).tolist()
    values = torch.Tensor(v1 + [0] + v3).sort().values
    values /= values.max()
    return values


CODEBOOKS = {k: normal_float_codebook(k) for k in (2, 3, 4, 8)}


def boundaries(codebook):
    """Midpoints between codebook values, for torch.bucketize (nearest value, ties to the lower)."""
    return torch.cat([torch.tensor([-torch.inf]), (codebook[1:] + codebook[:-1]) / 2.0, torch.tensor([torch.inf])])


def tensor_quant_unsigned(inputs, amax, num_bits):
    """pytorch_quantization.tensor_quant(inputs, amax, num_bits, unsigned=True)."""
    max_bound = torch.tensor(2.0 ** num_bits - 1.0)
    scale = max_bound / amax
    return torch.clamp((inputs * scale).round_(), 0, max_bound), scale


def lqlora_quantize(A, bits, block0, bits0, block1, dtype):
    """LQ-LoRA's grid quantizer as models/quantization_utils_2.py computes it (whole groups of
    block1 blocks only). Returns codes, scale codes, stored group absmax, offset, values."""
    codebook = CODEBOOKS[bits]
    Ar = A.view(-1, block1, block0)
    scales0 = Ar.abs().amax(dim=2, keepdim=True)
    offset = scales0.min()
    scales0_off = scales0 - offset
    scales1 = scales0_off.abs().amax(dim=1, keepdim=True)
    scales1_stored = scales1.to(dtype).to(torch.float32)
    q0, step = tensor_quant_unsigned(scales0_off, torch.broadcast_to(scales1_stored, scales0_off.shape), bits0)
    scales_dq = q0 / step + offset
    scales_full = torch.broadcast_to(scales_dq, Ar.shape).reshape(A.shape)
    codes = torch.bucketize(A / scales_full, boundaries(codebook), right=False) - 1
    values = codebook[codes] * scales_full
    return codes.to(torch.uint8), q0.reshape(-1).to(torch.uint8), scales1_stored.reshape(-1), offset.reshape(1), values


def grid_quantize(A, config):
    """LQ-LoRA's blockwise_absmax_nf_quantization (models/quantization_utils_2.py, with
    pytorch-quantization's tensor_quant inlined) over flattened row-major blocks. config is
    (bits, block, scale bits, scale group, group-absmax dtype name). A short last group of blocks
    takes the absmax of the blocks it has; a group absmax ≤ 2⁻²⁴ codes its scales as 0 (scales =
    offset), and 0/0 is coded as 0, as lqlora's Quantizer does. Returns codes, scale codes, group
    absmax (as stored, widened to fp32), offset and the dequantized fp32 values, shaped like A."""
    bits, b0, sb, g, d = config
    assert A.dtype == torch.float32 and A.numel() % b0 == 0
    flat = A.reshape(-1, b0)
    nblocks = flat.shape[0]
    absmax = flat.abs().amax(dim=1)
    offset = absmax.min()
    centred = absmax - offset
    ngroups = -(-nblocks // g)
    padded = torch.cat([centred, torch.zeros(ngroups * g - nblocks)])  # centred ≥ 0: zeros leave maxima alone
    gabs = padded.view(ngroups, g).amax(dim=1).to(DTYPES[d]).to(torch.float32)
    gb = gabs.repeat_interleave(g)[:nblocks]
    max_bound = torch.tensor(2.0 ** sb - 1.0)
    step = max_bound / gb
    live = gb > 2.0 ** -24
    q0 = torch.where(live, torch.clamp((centred * step).round(), 0, max_bound), torch.zeros(()))
    scales = torch.where(live, q0 / step, torch.zeros(())) + offset
    x = flat / scales[:, None]
    x = torch.where(torch.isnan(x), torch.zeros(()), x)
    codes = torch.bucketize(x, boundaries(CODEBOOKS[bits]), right=False) - 1
    values = CODEBOOKS[bits][codes] * scales[:, None]
    return {"codes": codes.reshape(-1).to(torch.uint8), "scale_codes": q0.to(torch.uint8), "group_absmax": gabs,
            "offset": offset.reshape(1), "values": values.reshape(A.shape)}


def hf_perplexity_sums(model, ids, ctx, stride):
    """transformers' documented sliding window ("Perplexity of fixed-length models"): windows of
    `ctx` tokens every `stride`, each scoring the tokens the previous one did not. ids is a [1, n]
    tensor; returns (sum of token NLLs, tokens scored)."""
    seq_len = ids.size(1)
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    with torch.no_grad():
        for begin in range(0, seq_len, stride):
            end = min(begin + ctx, seq_len)
            trg_len = end - prev_end
            input_ids = ids[:, begin:end]
            target = input_ids.clone()
            target[:, :-trg_len] = -100
            loss = model(input_ids, labels=target).loss
            valid = (target != -100).sum().item() - target.size(0)
            nll_sum += loss.item() * valid
            n_tokens += valid
            prev_end = end
            if end == seq_len:
                break
    return nll_sum, n_tokens
