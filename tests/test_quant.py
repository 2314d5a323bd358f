"""Quantized linears (modeling/quant.py) on tiny random models: each kernel against its own float32 reference, the
`quantization=` switch through from_pretrained / pipeline / CLI, bad input, and int8 translation against fp32."""
import json
import logging

import pytest
import torch
import transformers
from oracle import save_tiny

import leanformers
from leanformers import cli
from leanformers.modeling import kernels, quant

pytestmark = pytest.mark.usefixtures("one_thread")
transformers.logging.set_verbosity_error()


def relative_error(a, b) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


# ---------------------------------------------------------------- the layers against their float math
@pytest.mark.parametrize("rows", [1, 3, 37, 70])
@pytest.mark.parametrize("kernel", ["blocks", "bf16", "dequant"])
@pytest.mark.parametrize("group_size", [32, 64])
def test_int4_layer_computes_its_dequantized_weight(rows, kernel, group_size, monkeypatch):
    monkeypatch.setenv("LEANFORMERS_QUANT_KERNEL", kernel)
    torch.manual_seed(0)
    weight, bias, x = torch.randn(48, 128), torch.randn(48), torch.randn(rows, 128)
    layer = quant.Int4WeightLinear.from_float(weight, bias, group_size=group_size)
    assert layer.kernel == kernel and layer.weight.dtype == torch.uint8 and layer.weight.numel() == 48 * 64
    dequantized = layer.dequantize()
    assert relative_error(dequantized, weight) < 0.1  # 4 bits: half a step of 1/15 of each group's range
    reference = x @ dequantized.t() + bias
    # bf16 activations and outputs (torch's kernel, <= 64 rows): ~2^-8 relative; int8 activation blocks (ours,
    # <= 64 rows): ~1/254 of each block's largest value; the fp32 path is exact
    bound = {"bf16": 1e-2, "blocks": 1e-4, "dequant": 1e-5}[kernel] if rows <= 64 else 1e-5
    assert relative_error(layer(x), reference) < bound


def blocks_reference(x, codes, d, m=None):
    """The block kernels' arithmetic in plain torch: each block of 32 inputs as x = xd * (q1 + q2 / 254) (q1 =
    round(x * 127 / block max), q2 = round((x * 127 / block max - q1) * 254), half to even), its integer dot
    products with the weight codes times both scales, plus m * (the block's float sum of x)."""
    blocks = x.view(x.shape[0], -1, 32)
    amax = blocks.abs().amax(-1, keepdim=True)
    t = blocks * torch.where(amax > 0, 127 / amax, 0)
    q1 = torch.round(t)
    q2 = torch.round((t - q1) * 254).clamp(-127, 127)
    xd = amax[..., 0] / 127 / 254
    codes = codes.view(codes.shape[0], -1, 32).double()
    dots = 254 * torch.einsum("rbi,nbi->rnb", q1.double(), codes) + torch.einsum("rbi,nbi->rnb", q2.double(), codes)
    y = (dots * d.double()[None] * xd.double()[:, None]).sum(-1)
    if m is not None:
        y += (m.double()[None] * blocks.sum(-1).double()[:, None]).sum(-1)
    return y.float()


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 9])
def test_block_kernels_compute_their_definition(rows):
    """torch.ops.leanformers.q4_linear / q8_linear equal their arithmetic written out in torch (float64): every
    row count (register tiles of 4 rows and the 1-3 left over), 4-bit with a minimum, int8 with a scale per block
    or per row, on the CPUs CI runs on (x86-64 with AVX2)."""
    assert kernels.blocks(), "the block kernels did not build on this machine (see the warning above)"
    torch.manual_seed(rows)
    n, k = 40, 96
    x = torch.randn(rows, k) * torch.rand(1, k) * 4
    codes4 = torch.randint(0, 16, (n, k), dtype=torch.uint8)
    d, m = torch.rand(n, k // 32) / 10, torch.randn(n, k // 32) / 10
    y = torch.ops.leanformers.q4_linear(x, quant._nibbles(codes4), d, m, None)
    assert relative_error(y, blocks_reference(x, codes4.float(), d, m)) < 1e-5  # float32 sums, float64 reference
    codes8 = torch.randint(-128, 128, (n, k), dtype=torch.int8)
    bias = torch.randn(n)
    y = torch.ops.leanformers.q8_linear(x, codes8, d, bias)
    assert relative_error(y, blocks_reference(x, codes8.float(), d) + bias) < 1e-5
    row_scale = torch.rand(n) / 10
    y = torch.ops.leanformers.q8_linear(x, codes8, row_scale, None)
    assert relative_error(y, blocks_reference(x, codes8.float(), row_scale[:, None].expand(n, k // 32))) < 1e-5


@pytest.mark.parametrize("rows", [1, 2, 9])
@pytest.mark.parametrize("kernel", ["blocks", "bf16", "int8x2", "dequant"])
def test_int8_weight_layer_computes_its_dequantized_weight(rows, kernel, monkeypatch):
    torch.manual_seed(0)
    weight, x = torch.randn(40, 64), torch.randn(2, rows, 64)
    layer = quant.Int8WeightLinear.from_float(weight)
    layer.kernel = kernel
    if kernel == "int8x2":
        layer._pack()
    assert relative_error(layer.dequantize(), weight) < 0.01
    reference = x @ layer.dequantize().t()
    bound = {"bf16": 1e-2, "int8x2": 2e-4, "dequant": 1e-5, "blocks": 0}[kernel] if rows * 2 <= quant.GEMV_ROWS else 1e-5
    bound = 1e-4 if kernel == "blocks" else bound  # ~16-bit activation blocks, at every row count here
    assert relative_error(layer(x), reference) < bound


def test_int8_dynamic_layer_is_close_to_float():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    layer = quant.Int8DynamicLinear(linear.weight, linear.bias)
    x = torch.randn(5, 64)
    assert layer.weight.dtype == torch.int8
    assert relative_error(layer(x), linear(x)) < 0.03  # int8 activations per call, int8 weights per channel


def test_int4_unpack_index_follows_torch_layout():
    q = torch.randint(0, 16, (32, 128), dtype=torch.int32)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 2)
    nibbles = torch.stack([packed & 15, packed >> 4], dim=-1).view(-1)
    assert torch.equal(nibbles[quant._int4_unpack_index(32, 128)].view(32, 128).int(), q)


# ---------------------------------------------------------------- a model through the switch
@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=64)
    return save_tiny(transformers.GPT2LMHeadModel(config).eval(), tmp_path_factory.mktemp("gpt2"))


@pytest.mark.parametrize("mode", ["int8", "int8-weight", "int4-weight"])
def test_from_pretrained_quantizes_every_linear(tiny_gpt2, mode):
    reference = leanformers.AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    model = leanformers.AutoModelForCausalLM.from_pretrained(tiny_gpt2, quantization=mode)
    report = model.quantization_report
    assert report["mode"] == mode and not report["kept_float"]
    assert not any(type(m) in (torch.nn.Linear, leanformers.modeling.packed.PackedLinear) for m in model.modules())
    if mode != "int8":  # the tied head and the embedding share one int8 table
        assert model.head.decoder.weight is model.model.embeddings.word.weight
        assert model.head.decoder.weight.dtype == torch.int8
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(0))
    # random Gaussian weights are the worst case for 4 bits (no structure); real models: test_quant_real.py
    bound = 0.1 if mode == "int4-weight" else 0.05
    assert relative_error(model(ids).logits, reference(ids).logits) < bound
    greedy = model.generate(ids[:1, :4], max_new_tokens=6, do_sample=False)
    assert greedy.shape == (1, 10)


def test_model_quantize_reports_layers_kept_in_float(tiny_gpt2, caplog):
    model = leanformers.AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    with caplog.at_level(logging.WARNING, logger="leanformers"):
        report = model.quantize("int4-weight", group_size=128)  # in_features 64 (and 256) vs group 128
    assert "model.layers.0.attention.qkv" in report["kept_float"]
    assert "not divisible by the int4 group size 128" in report["kept_float"]["model.layers.0.attention.qkv"]
    assert "model.layers.0.mlp.down" in report["quantized"]  # in_features 256 divides by 128
    assert "kept 6 layer(s) in float32" in caplog.text and "model.layers.1.mlp.up" in caplog.text
    assert isinstance(model.get_submodule("model.layers.0.attention.qkv"), torch.nn.Linear)


def test_bad_quantization_input(tiny_gpt2, monkeypatch):
    with pytest.raises(ValueError, match="unknown quantization 'int3'; valid: 'int8', 'int8-weight', 'int4-weight'"):
        leanformers.AutoModelForCausalLM.from_pretrained(tiny_gpt2, quantization="int3")
    with pytest.raises(ValueError, match="needs gguf_file="):
        leanformers.AutoModelForCausalLM.from_pretrained(tiny_gpt2, quantization="gguf")
    model = leanformers.AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    with pytest.raises(ValueError, match=r"group_size must be one of \(32, 64, 128, 256\)"):
        model.quantize("int4-weight", group_size=48)
    model.quantize("int8")
    with pytest.raises(ValueError, match="already quantized"):
        model.quantize("int8-weight")
    monkeypatch.setattr(quant, "cpu_features", lambda: {"bf16": False, "vnni": False, "engine": None})
    with pytest.raises(RuntimeError, match="needs a torch quantized engine"):
        leanformers.AutoModelForCausalLM.from_pretrained(tiny_gpt2, quantization="int8")


def test_pipeline_and_cli_take_the_switch(tiny_gpt2, tmp_path, capsys):
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, num_labels=3)
    folder = save_tiny(transformers.BertForSequenceClassification(config).eval(), tmp_path / "bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(115)]
    (tmp_path / "bert" / "vocab.txt").write_text("\n".join(vocab))
    pipe = leanformers.pipeline("text-classification", model=folder, quantization="int8")
    assert pipe.model.quantization_report["mode"] == "int8"
    loaded = leanformers.AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = leanformers.AutoTokenizer.from_pretrained(folder)
    given = leanformers.pipeline("text-classification", model=loaded, tokenizer=tokenizer, quantization="int8-weight")
    assert given.model is loaded and loaded.quantization_report["mode"] == "int8-weight"
    assert cli.main(["text-classification", "w1 w2 w3", "--model", folder, "--quantization", "int8"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["label"].startswith("LABEL_")
    assert cli.main(["text-classification", "w1", "--model", folder, "--quantization", "int2"]) == 2
    assert "unknown quantization 'int2'" in capsys.readouterr().err


# ---------------------------------------------------------------- translation: int8 vs fp32
def test_translation_int8_keeps_95_percent_of_sentences(tmp_path):
    """No real translation weights can be had here: a random Marian (d_model 256, 2+2 layers, vocab 1000, weights
    drawn with std 0.1 so its next-token choices are not coin flips) translating 64 fixed random sentences greedily;
    >= 95% of the outputs must equal fp32's token for token."""
    torch.manual_seed(0)
    config = transformers.MarianConfig(
        vocab_size=1000, d_model=256, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024, max_position_embeddings=128,
        pad_token_id=999, decoder_start_token_id=999, eos_token_id=0, init_std=0.1, activation_function="swish")
    folder = save_tiny(transformers.MarianMTModel(config).eval(), tmp_path / "marian")
    fp32 = leanformers.AutoModelForSeq2SeqLM.from_pretrained(folder)
    int8 = leanformers.AutoModelForSeq2SeqLM.from_pretrained(folder, quantization="int8")
    generator = torch.Generator().manual_seed(1)
    same = 0
    for _ in range(4):
        ids = torch.randint(1, 998, (16, 12), generator=generator)
        settings = {"max_new_tokens": 16, "min_new_tokens": 16, "do_sample": False, "num_beams": 1,
                    "bad_words_ids": [[999]]}
        a, b = fp32.generate(ids, **settings), int8.generate(ids, **settings)
        same += sum(torch.equal(x, y) for x, y in zip(a, b))
    assert same / 64 >= 0.95, f"{same}/64 sentences identical"


# ---------------------------------------------------------------- GGUF kept quantized: every stored type
@pytest.mark.parametrize("kernel", ["blocks", "bf16"])
@pytest.mark.parametrize("tied", [False, True])
def test_tiny_gguf_kept_quantized_maps_each_type(tmp_path, tied, kernel, monkeypatch):
    """test_gguf.py's tiny Llama stores Q8_0 / Q4_0 / Q4_1 / Q5_1 / F16 / BF16 / F32 tensors: 4-bit blocks become
    int4 layers, wider blocks int8 layers, the Q8_0 embedding an int8 table (shared with a tied head), float types
    stay float; the logits stay close to the dequantized (float32) load."""
    from test_gguf import tiny_hf_weights, write_tiny_gguf

    monkeypatch.setenv("LEANFORMERS_QUANT_KERNEL", kernel)
    path = write_tiny_gguf(tmp_path / "tiny.gguf", "llama", tiny_hf_weights("llama", tied))
    fp32 = leanformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name)
    model = leanformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, quantization="gguf")
    layer = model.model.layers[0]
    assert isinstance(layer.attention.k, quant.Int4WeightLinear)  # Q4_0
    assert isinstance(layer.mlp.gate, quant.Int4WeightLinear)  # Q4_1
    assert isinstance(layer.mlp.up, quant.Int8WeightLinear) and isinstance(layer.attention.o, quant.Int8WeightLinear)
    assert type(layer.attention.q) is torch.nn.Linear and type(layer.mlp.down) is torch.nn.Linear  # F16, F32
    assert isinstance(model.model.embeddings.word, quant.Int8Embedding)
    assert (model.head.decoder.weight is model.model.embeddings.word.weight) == tied
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    assert relative_error(model(ids).logits, fp32(ids).logits) < 0.03
    # the int4 layers hold the file's own 4-bit codes: their weights equal the dequantized file's, exactly with the
    # block kernels (GGUF's own layout and float16 scales), up to bf16 scales with torch's
    for name in ("model.layers.1.attention.k", "model.layers.1.mlp.gate"):
        expected = fp32.get_submodule(name).weight
        assert relative_error(model.get_submodule(name).dequantize(), expected) < (1e-6 if kernel == "blocks"
                                                                                    else 2 ** -7)
    if kernel == "blocks":  # Q8_0 keeps its scale per block of 32: the file's weights exactly
        o = model.get_submodule("model.layers.1.attention.o")
        assert o.weight_scale.shape == (o.out_features, o.in_features // 32)
        assert relative_error(o.dequantize(), fp32.get_submodule("model.layers.1.attention.o").weight) < 1e-6
    for step in range(1, 4):  # decoding rows
        assert relative_error(model(ids[:, :step]).logits, fp32(ids[:, :step]).logits) < 0.03


def test_gguf_4bit_blocks_become_int8_rows_without_bf16(tmp_path, monkeypatch):
    """On a CPU without AVX512-BF16/AMX (AVX2), where torch's int4 kernel and the dequantizing fallback are both
    slower than float32, the 4-bit blocks are held as int8 rows on the int8 engine: close to the float load."""
    from test_gguf import tiny_hf_weights, write_tiny_gguf

    monkeypatch.delenv("LEANFORMERS_QUANT_KERNEL", raising=False)
    features = {**quant.cpu_features(), "bf16": False}
    monkeypatch.setattr(quant, "cpu_features", lambda: features)
    monkeypatch.setattr(kernels, "blocks", lambda: False)  # and no C++ compiler for our block kernels
    path = write_tiny_gguf(tmp_path / "tiny.gguf", "llama", tiny_hf_weights("llama", False))
    fp32 = leanformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name)
    model = leanformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, quantization="gguf")
    layer = model.model.layers[0]
    assert model.quantization_report["int4_as_int8"] and not model.quantization_report["kept_float"]
    for module in (layer.attention.k, layer.mlp.gate, layer.mlp.up):  # Q4_0, Q4_1, Q5_1
        assert isinstance(module, quant.Int8WeightLinear) and module.kernel == "int8x2"
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    assert relative_error(model(ids).logits, fp32(ids).logits) < 0.03
    for step in range(1, 4):  # decoding rows (<= 4) take the two-pass int8 kernel
        assert relative_error(model(ids[:, :step]).logits, fp32(ids[:, :step]).logits) < 0.03
