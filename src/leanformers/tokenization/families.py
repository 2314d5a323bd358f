"""Tokenizer families: what transformers' per-model tokenizer classes add on top of the backend.

A family is named by transformers' class name without "Fast" (the `tokenizer_class` key of tokenizer_config.json)
and holds that class's defaults: special tokens, returned keys (model_input_names), and which legacy files build it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tokenizers import AddedToken

WITH_TYPE_IDS = ("input_ids", "token_type_ids", "attention_mask")
WITHOUT_TYPE_IDS = ("input_ids", "attention_mask")

MBART_LANGUAGE_CODES = (
    "ar_AR cs_CZ de_DE en_XX es_XX et_EE fi_FI fr_XX gu_IN hi_IN it_IT ja_XX kk_KZ ko_KR lt_LT lv_LV my_MM ne_NP "
    "nl_XX ro_RO ru_RU si_LK tr_TR vi_VN zh_CN"
).split()
M2M100_LANGUAGES = (
    "af am ar ast az ba be bg bn br bs ca ceb cs cy da de el en es et fa ff fi fr fy ga gd gl gu ha he hi hr ht hu "
    "hy id ig ilo is it ja jv ka kk km kn ko lb lg ln lo lt lv mg mk ml mn mr ms my ne nl no ns oc or pa pl ps pt ro "
    "ru sd si sk sl so sq sr ss su sv sw ta th tl tn tr uk ur uz vi wo xh yi yo zh zu"
).split()
MBART50_LANGUAGE_CODES = MBART_LANGUAGE_CODES + (
    "af_ZA az_AZ bn_IN fa_IR he_IL hr_HR id_ID ka_GE km_KH mk_MK ml_IN mn_MN mr_IN pl_PL ps_AF pt_XX sv_SE sw_KE "
    "ta_IN te_IN th_TH tl_XX uk_UA ur_PK xh_ZA gl_ES sl_SI"
).split()


def _mask(lstrip_token: str = "<mask>", normalized=None) -> AddedToken:
    """The mask token of RoBERTa-like vocabularies swallows the space before it."""
    if normalized is None:
        return AddedToken(lstrip_token, lstrip=True, rstrip=False)
    return AddedToken(lstrip_token, lstrip=True, rstrip=False, normalized=normalized)


BERT_SPECIAL = dict(unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
BERT_OPTIONS = dict(do_lower_case=True, tokenize_chinese_chars=True, strip_accents=None)
FAIRSEQ_SPECIAL = dict(bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                       pad_token="<pad>")
GPT2_SPECIAL = dict(unk_token="<|endoftext|>", bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                    add_prefix_space=False)


@dataclass(frozen=True)
class Family:
    defaults: dict = field(default_factory=dict)  # __init__ defaults of the transformers class
    model_input_names: tuple[str, ...] = WITH_TYPE_IDS
    files: str | None = None  # which legacy files build it: "wordpiece", "bpe", "spm", "marian", "m2m100"
    converted_defaults: dict = field(default_factory=dict)  # extra defaults of the slow class, used on conversion
    words_need_prefix_space: bool = False  # byte-level BPE refuses is_split_into_words without add_prefix_space
    language_codes: tuple[str, ...] = ()  # language tokens, added as special tokens
    language_code_first: bool = False  # mBART-50/M2M100: [lang] X </s>; mBART: X </s> [lang]
    language_token: str = "{}"  # src_lang "en" -> token "__en__" for M2M100
    language_codes_special: bool = True  # M2M100 numbers them after vocab.json but never treats them as special
    default_src_lang: str = "en_XX"
    # slow-only tokenizers (Marian, M2M100) decode runs of pieces and put each special token apart, then strip
    special_token_separator: str | None = None


def _bert(input_names=WITH_TYPE_IDS) -> Family:
    return Family({**BERT_SPECIAL, **BERT_OPTIONS}, input_names, "wordpiece",
                  converted_defaults={"clean_up_tokenization_spaces": True})


def _roberta() -> Family:
    return Family({**FAIRSEQ_SPECIAL, "mask_token": _mask(normalized=False), "add_prefix_space": False,
                   "trim_offsets": True}, WITHOUT_TYPE_IDS, "bpe", words_need_prefix_space=True)


def _mbart(codes, first: bool, special=None) -> Family:
    special = FAIRSEQ_SPECIAL if special is None else special
    return Family({**special, "mask_token": _mask()}, WITHOUT_TYPE_IDS, "spm",
                  language_codes=tuple(codes), language_code_first=first)


FAMILIES: dict[str, Family] = {
    "PreTrainedTokenizer": Family(),
    "BertTokenizer": _bert(),
    "ElectraTokenizer": _bert(),
    "DistilBertTokenizer": _bert(WITHOUT_TYPE_IDS),
    "RobertaTokenizer": _roberta(),
    "BartTokenizer": _roberta(),
    "LongformerTokenizer": _roberta(),
    "GPT2Tokenizer": Family(GPT2_SPECIAL, WITHOUT_TYPE_IDS, "bpe", words_need_prefix_space=True),
    "AlbertTokenizer": Family(
        dict(do_lower_case=True, remove_space=True, keep_accents=False, bos_token="[CLS]", eos_token="[SEP]",
             unk_token="<unk>", sep_token="[SEP]", pad_token="<pad>", cls_token="[CLS]",
             mask_token=_mask("[MASK]", normalized=False)), WITH_TYPE_IDS, "spm"),
    "T5Tokenizer": Family(dict(eos_token="</s>", unk_token="<unk>", pad_token="<pad>", extra_ids=100),
                          WITHOUT_TYPE_IDS, "spm"),
    "XLMRobertaTokenizer": Family({**FAIRSEQ_SPECIAL, "mask_token": _mask()}, WITHOUT_TYPE_IDS, "spm"),
    "MBartTokenizer": _mbart(MBART_LANGUAGE_CODES, first=False),
    "MBart50Tokenizer": _mbart(MBART50_LANGUAGE_CODES, first=True,
                               special={k: v for k, v in FAIRSEQ_SPECIAL.items() if k != "bos_token"}),
    "MarianTokenizer": Family(dict(unk_token="<unk>", eos_token="</s>", pad_token="<pad>", model_max_length=512),
                              WITHOUT_TYPE_IDS, "marian", special_token_separator=" "),
    "M2M100Tokenizer": Family({**{k: v for k, v in FAIRSEQ_SPECIAL.items() if k != "cls_token"}},
                              WITHOUT_TYPE_IDS, "m2m100", language_codes=tuple(f"__{c}__" for c in M2M100_LANGUAGES),
                              language_code_first=True, language_token="__{}__", default_src_lang="en",
                              special_token_separator="", language_codes_special=False),
    "DebertaV2Tokenizer": Family(
        dict(do_lower_case=False, split_by_punct=False, bos_token="[CLS]", eos_token="[SEP]", unk_token="[UNK]",
             sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]"), WITH_TYPE_IDS, "spm"),
    "MPNetTokenizer": Family({**FAIRSEQ_SPECIAL, "unk_token": "[UNK]", "mask_token": _mask(), "do_lower_case": True},
                             WITHOUT_TYPE_IDS),
    # decoder-only LLM classes pad on the left by default
    "LlamaTokenizer": Family(dict(unk_token="<unk>", bos_token="<s>", eos_token="</s>", add_bos_token=True,
                                  add_eos_token=False, clean_up_tokenization_spaces=False, padding_side="left"),
                             WITHOUT_TYPE_IDS),
    "GemmaTokenizer": Family(dict(unk_token="<unk>", bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                  add_bos_token=True, add_eos_token=False, padding_side="left"), WITHOUT_TYPE_IDS),
    "Qwen2Tokenizer": Family(dict(unk_token="<|endoftext|>", bos_token=None, eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>"), WITHOUT_TYPE_IDS),
}

# config.json model_type -> family, for folders whose tokenizer_config.json does not name a tokenizer_class
MODEL_TYPE_FAMILIES = {
    "bert": "BertTokenizer", "electra": "ElectraTokenizer", "distilbert": "DistilBertTokenizer",
    "roberta": "RobertaTokenizer", "bart": "BartTokenizer", "longformer": "LongformerTokenizer",
    "gpt2": "GPT2Tokenizer", "albert": "AlbertTokenizer", "t5": "T5Tokenizer", "mt5": "T5Tokenizer",
    "xlm-roberta": "XLMRobertaTokenizer", "mbart": "MBartTokenizer", "marian": "MarianTokenizer",
    "m2m_100": "M2M100Tokenizer", "llama": "LlamaTokenizer",
    "mistral": "LlamaTokenizer", "gemma": "GemmaTokenizer", "qwen2": "Qwen2Tokenizer",
    "mpnet": "MPNetTokenizer", "deberta-v2": "DebertaV2Tokenizer",
}


def family_name(tokenizer_class: str | None) -> str:
    name = (tokenizer_class or "PreTrainedTokenizer").removesuffix("Fast")
    return name if name in FAMILIES else "PreTrainedTokenizer"


def family_of(tokenizer_class: str | None) -> Family:
    return FAMILIES[family_name(tokenizer_class)]
