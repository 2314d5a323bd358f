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
@pytest.mark.parametrize("rows", [1, 3, 37])
@pytest.mark.parametrize("kernel", ["bf16", "dequant"])
def test_int4_layer_computes_its_dequantized_weight(rows, kernel, monkeypatch):
    monkeypatch.setenv("LEANFORMERS_QUANT_KERNEL", kernel)
    torch.manual_seed(0)
    weight, bias, x = torch.randn(48, 64), torch.randn(48), torch.randn(rows, 64)
    layer = quant.Int4WeightLinear.from_float(weight, bias, group_size=32)
    assert layer.kernel == kernel and layer.weight.dtype == torch.uint8 and layer.weight.numel() == 48 * 32
    dequantized = layer.dequantize()
    assert relative_error(dequantized, weight) < 0.1  # 4 bits: half a step of 1/15 of each group's range
    reference = x @ dequantized.t() + bias
    # bf16 activations and outputs on the kernel path (<= 64 rows): ~2^-8 relative; the fp32 path is exact
    assert relative_error(layer(x), reference) < (1e-2 if kernel == "bf16" and rows <= 64 else 1e-5)


@pytest.mark.parametrize("rows", [1, 2, 9])
@pytest.mark.parametrize("kernel", ["bf16", "int8x2", "dequant"])
def test_int8_weight_layer_computes_its_dequantized_weight(rows, kernel, monkeypatch):
    torch.manual_seed(0)
    weight, x = torch.randn(40, 64), torch.randn(2, rows, 64)
    layer = quant.Int8WeightLinear.from_float(weight)
    layer.kernel = kernel
    if kernel == "int8x2":
        layer._pack()
    assert relative_error(layer.dequantize(), weight) < 0.01
    reference = x @ layer.dequantize().t()
    bound = {"bf16": 1e-2, "int8x2": 2e-4, "dequant": 1e-5}[kernel] if rows * 2 <= quant.GEMV_ROWS else 1e-5
    assert relative_error(layer(x), reference) < bound


# ---------------------------------------------------------------- the GGML-block kernels (ours, modeling/kernels)
def blocks_reference(x, codes, d, m=None):
    """The block kernels' arithmetic in plain torch (float64 sums): each block of 32 inputs as x = xd * (q1 + q2 /
    254) with t = x * 127 / block max, q1 = round(t), q2 = round((t - q1) * 254) (half to even); each block's
    integer dot products with the weight codes times both scales; plus m * (the block's float sum of x)."""
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


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 9])
@pytest.mark.parametrize("out_features", [40, 7])
def test_block_kernels_compute_their_definition(rows, out_features):
    """torch.ops.leanformers.q4_linear / q8_linear on GGUF Q4_1 / Q8_0 bytes (as 8-row tiles) equal their arithmetic
    written out in torch: whole tiles and a padded last one, any number of rows, on the CPUs CI runs on (x86-64
    with AVX2 + FMA + F16C: built here, never skipped)."""
    assert kernels.blocks(), "the block kernels did not build on this machine (see the warning above)"
    torch.manual_seed(rows)
    n, k = out_features, 96
    x = torch.randn(rows, k) * torch.rand(1, k) * 4
    codes4 = torch.randint(0, 16, (n, k), dtype=torch.uint8)
    d, m = (torch.rand(n, k // 32) / 10).half().float(), (torch.randn(n, k // 32) / 10).half().float()
    tiles4 = quant.tile_blocks(quant.q4_1_blocks(codes4, d, m), "Q4_1")
    y = torch.ops.leanformers.q4_linear(x, tiles4, n, None)
    assert relative_error(y, blocks_reference(x, codes4.float(), d, m)) < 1e-5  # float32 sums vs float64
    codes8 = torch.randint(-128, 128, (n, k), dtype=torch.int8)
    bias = torch.randn(n)
    tiles8 = quant.tile_blocks(quant.q8_0_blocks(codes8, d), "Q8_0")
    y = torch.ops.leanformers.q8_linear(x.view(rows, 1, k), tiles8, n, bias)  # any leading dimensions
    assert y.shape == (rows, 1, n)
    assert relative_error(y.view(rows, n), blocks_reference(x, codes8.float(), d) + bias) < 1e-5
    with pytest.raises(RuntimeError, match="input with 64 features does not match the weight"):
        torch.ops.leanformers.q8_linear(x[:, :64], tiles8, n, None)
    with pytest.raises(RuntimeError, match="does not match"):
        torch.ops.leanformers.q8_linear(x, tiles8, n + 8, None)


@pytest.mark.parametrize("block_type,group_size", [("Q4_1", 32), ("Q4_1", 128), ("Q8_0", 32)])
@pytest.mark.parametrize("rows", [1, 3, 8, 37, 130])
def test_block_linear_computes_its_dequantized_weight(block_type, group_size, rows):
    """BlockLinear against its own dequantized weight; its tiles give back the GGUF rows they were made of."""
    torch.manual_seed(0)
    weight, bias, x = torch.randn(48, 256), torch.randn(48), torch.randn(rows, 256)
    layer = quant.BlockLinear.from_float(weight, block_type, bias, group_size)
    assert layer.weight.dtype == torch.uint8 and layer.weight.shape == (6, 8 * 8 * quant.BLOCK_BYTES[block_type])
    assert torch.equal(layer.blocks(), quant.quantize_blocks(weight, block_type, group_size))
    dequantized = layer.dequantize()
    # 4 bits: half a step of 1/15 of each group's range; 8 bits: half a step of 1/127 of each block's largest
    assert relative_error(dequantized, weight) < (0.1 if block_type == "Q4_1" else 0.005)
    if group_size == 128:  # one float16 scale and minimum per group of 128, repeated over its 4 blocks
        scales = layer.blocks().view(48, 8, 20)[..., :4]
        assert torch.equal(scales[:, 0::4], scales[:, 1::4]) and torch.equal(scales[:, 0::4], scales[:, 3::4])
    reference = x @ dequantized.t() + bias
    y = layer(x)  # activations to ~2^-16 of each block's largest
    assert relative_error(y, reference) < 1e-4
    for row in (0, rows - 1):  # a row's result does not depend on the rows beside it: batched == alone, bit for bit
        assert torch.equal(layer(x[row:row + 1]), y[row:row + 1])
    assert layer(x[:0]).shape == (0, 48)


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
    if mode != "int8":  # the tied head and the embedding share one int8 table (Q8_0 blocks with our kernels)
        assert model.head.decoder.weight is model.model.embeddings.word.weight
        assert isinstance(model.model.embeddings.word, quant.BlockEmbedding)
        assert model.head.decoder.weight.dtype == torch.uint8 and model.head.decoder.block_type == "Q8_0"
        layers = [m for m in model.modules() if isinstance(m, quant.BlockLinear)]
        assert {m.block_type for m in layers} == {"Q8_0" if mode == "int8-weight" else "Q4_1"} | {"Q8_0"}
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
@pytest.mark.parametrize("tied", [False, True])
def test_tiny_gguf_kept_quantized_maps_each_type(tmp_path, tied, monkeypatch):
    """test_gguf.py's tiny Llama stores Q8_0 / Q4_0 / Q4_1 / Q5_1 / F16 / BF16 / F32 tensors: 4-bit blocks become
    int4 layers, wider blocks int8 layers, the Q8_0 embedding an int8 table (shared with a tied head), float types
    stay float; the logits stay close to the dequantized (float32) load."""
    from test_gguf import tiny_hf_weights, write_tiny_gguf

    monkeypatch.setenv("LEANFORMERS_QUANT_KERNEL", "bf16")  # int4 layers on any CPU (AVX2 would take int8 rows)
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
    # the int4 layers hold the file's own 4-bit codes: their weights equal the dequantized file's up to bf16 scales
    for name in ("model.layers.1.attention.k", "model.layers.1.mlp.gate"):
        expected = fp32.get_submodule(name).weight
        assert relative_error(model.get_submodule(name).dequantize(), expected) < 2 ** -7


@pytest.mark.parametrize("tied", [False, True])
def test_tiny_gguf_keeps_the_file_blocks_with_the_block_kernels(tmp_path, tied, monkeypatch):
    """With our block kernels (the default on AVX2 CPUs): Q4_1 and Q8_0 tensors hold the file's bytes, Q4_0 the
    same codes as Q4_1 (m = -8 d), Q5_1 is re-quantized to Q8_0, the Q8_0 embedding stays a Q8_0 table (shared
    with a tied head), float types stay float; weights equal the dequantized file's exactly where bit for bit."""
    import gguf
    from test_gguf import tiny_hf_weights, write_tiny_gguf

    monkeypatch.delenv("LEANFORMERS_QUANT_KERNEL", raising=False)
    path = write_tiny_gguf(tmp_path / "tiny.gguf", "llama", tiny_hf_weights("llama", tied))
    fp32 = leanformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name)
    model = leanformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, quantization="gguf")
    assert model.quantization_report["kernel"] == "blocks" and not model.quantization_report["kept_float"]
    layer = model.model.layers[1]
    kinds = {"attention.k": "Q4_1", "mlp.gate": "Q4_1", "attention.o": "Q8_0", "mlp.up": "Q8_0"}
    for name, block_type in kinds.items():
        module = layer.get_submodule(name)
        assert isinstance(module, quant.BlockLinear) and module.block_type == block_type, name
    assert type(layer.attention.q) is torch.nn.Linear and type(layer.mlp.down) is torch.nn.Linear  # F16, F32
    assert isinstance(model.model.embeddings.word, quant.BlockEmbedding)
    assert (model.head.decoder.weight is model.model.embeddings.word.weight) == tied
    stored = {t.name: t for t in gguf.GGUFReader(path).tensors}
    assert torch.equal(layer.mlp.gate.blocks(), torch.from_numpy(stored["blk.1.ffn_gate.weight"].data.copy()))
    assert torch.equal(layer.attention.o.blocks(), torch.from_numpy(stored["blk.1.attn_output.weight"].data.copy()))
    for name in ("attention.k", "mlp.gate", "attention.o"):  # Q4_0, Q4_1, Q8_0: exactly the file's weights
        expected = fp32.model.layers[1].get_submodule(name).weight
        assert relative_error(layer.get_submodule(name).dequantize(), expected) < 1e-6, name
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    assert relative_error(model(ids).logits, fp32(ids).logits) < 0.03
    for step in range(1, 4):  # decoding rows: the kernels
        assert relative_error(model(ids[:, :step]).logits, fp32(ids[:, :step]).logits) < 0.03


def test_gguf_4bit_blocks_become_int8_rows_without_bf16(tmp_path, monkeypatch):
    """On a CPU without AVX512-BF16/AMX (AVX2), where torch's int4 kernel and the dequantizing fallback are both
    slower than float32, the 4-bit blocks are held as int8 rows on the int8 engine: close to the float load."""
    from test_gguf import tiny_hf_weights, write_tiny_gguf

    monkeypatch.delenv("LEANFORMERS_QUANT_KERNEL", raising=False)
    features = {**quant.cpu_features(), "bf16": False}
    monkeypatch.setattr(quant, "cpu_features", lambda: features)
    monkeypatch.setattr(kernels, "blocks", lambda: False)  # nor a C++ compiler for our block kernels
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


def test_block_layers_join_qkv_and_gate_up(tmp_path, monkeypatch):
    """With the block kernels a Llama's q/k/v become one `qkv` layer and gate/up one `gate_up` (one call, one
    activation quantization): logits and greedy ids equal the unjoined layers'."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    folder = save_tiny(transformers.LlamaForCausalLM(config).eval(), tmp_path)
    joined = leanformers.AutoModelForCausalLM.from_pretrained(folder, quantization="int4-weight")
    assert joined.quantization_report["joined"] == ["model.layers.0.attention", "model.layers.0.mlp",
                                                    "model.layers.1.attention", "model.layers.1.mlp"]
    attention, mlp = joined.model.layers[0].attention, joined.model.layers[0].mlp
    assert isinstance(attention.qkv, quant.BlockLinear) and not hasattr(attention, "q")
    assert attention.qkv.out_features == 64 + 2 * 32 and mlp.gate_up.out_features == 2 * 96 and mlp.up is None
    monkeypatch.setattr(quant, "join_projections", lambda model: [])
    separate = leanformers.AutoModelForCausalLM.from_pretrained(folder, quantization="int4-weight")
    ids = torch.randint(0, 96, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(joined(ids).logits, separate(ids).logits, rtol=1e-6, atol=1e-6)
        assert torch.equal(joined.generate(ids[:1], max_new_tokens=8, do_sample=False),
                           separate.generate(ids[:1], max_new_tokens=8, do_sample=False))


def test_fused_decode_ops_equal_the_modules():
    """The block models' fused RMSNorm and rotary ops (one call each) compute what the modules compute: the same
    float32 operations (rotary bit for bit, RMSNorm up to the order of its sum of squares); they apply only at
    inference in float32 and fall back otherwise."""
    from leanformers.modeling import attention, layers

    assert kernels.blocks(), "the block kernels did not build on this machine (see the warning above)"
    torch.manual_seed(0)
    norm = layers.RMSNorm(100, 1e-6)
    norm.weight.data = torch.randn(100)
    x = torch.randn(2, 3, 100) * 5
    fused = quant.FusedRMSNorm(100, 1e-6)
    fused.load_state_dict(norm.state_dict())
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), norm(x), rtol=1e-6, atol=1e-6)
        q = torch.randn(2, 4, 7, 32).transpose(1, 2)  # (B, H=7, T=4, D) as a non-contiguous view, as attention has it
        for rows in (2, 1):  # cos / sin per batch row, or one for all
            cos, sin = torch.randn(rows, 4, 32), torch.randn(rows, 4, 32)
            assert torch.equal(quant.fused_rotary(q, cos, sin), attention.apply_rotary(q, cos, sin))
        partial = torch.randn(2, 4, 16)  # partial rotary: the module's path
        assert torch.equal(quant.fused_rotary(q, partial, partial), attention.apply_rotary(q, partial, partial))
    x.requires_grad_(True)
    assert fused(x).grad_fn is not None  # training keeps the differentiable module


def test_fused_decode_layer_equals_the_modules(tmp_path):
    """Block models decode a token through one op per layer (torch.ops.leanformers.decode_layer): its logits match
    the modules' path at every step (batch 1, and a left-padded batch through the attention bias) and greedy ids
    are the same."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    folder = save_tiny(transformers.LlamaForCausalLM(config).eval(), tmp_path)
    model = leanformers.AutoModelForCausalLM.from_pretrained(folder, quantization="int4-weight")
    blocks = [block for block in model.model.layers if block.fused_decode is not None]
    assert len(blocks) == 2

    def decode(ids, mask, fused: bool):
        for block in blocks:
            block.fused_decode = quant.fused_decode_step if fused else None
        with torch.inference_mode():
            out = model(ids[:, :-3], attention_mask=mask[:, :-3], use_cache=True)
            steps = [out.logits[:, -1]]
            for t in range(3, 0, -1):  # three single-token steps against the cache
                out = model(ids[:, -t:ids.shape[1] - t + 1], attention_mask=mask[:, :ids.shape[1] - t + 1],
                            past_key_values=out.past_key_values, use_cache=True)
                steps.append(out.logits[:, -1])
            greedy = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
        return torch.stack(steps), greedy

    ids = torch.randint(1, 96, (2, 10), generator=torch.Generator().manual_seed(2))
    for mask in (torch.ones_like(ids), torch.tensor([[0, 0, 0] + [1] * 7, [1] * 10])):  # plain, left-padded
        rows = slice(None) if mask.all() else slice(0, 2)
        fused_logits, fused_ids = decode(ids[rows], mask[rows], True)
        module_logits, module_ids = decode(ids[rows], mask[rows], False)
        assert relative_error(fused_logits, module_logits) < 1e-3
        assert torch.equal(fused_ids, module_ids)
