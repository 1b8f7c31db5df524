#!/usr/bin/env bash
# kdlab on a CUDA GPU, in one command: the tests that need CUDA, a short bf16 distillation run, and
# `kdlab bench throughput` on CUDA; one summary at the end. Record the figures in docs/performance.md.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (from the repository root; default OUT_DIR runs/gpu_check)
#
# Without a GPU it says so and exits 0. Exit 1 when a step fails (the summary names it).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/gpu_check}"
mkdir -p "$out"

if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA GPU found (torch.cuda.is_available() is False): nothing to check"
    exit 0
fi
device=$(python -c "import torch; p = torch.cuda.get_device_properties(0); print(f'{p.name}, {p.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} device(s), torch {torch.__version__}, CUDA {torch.version.cuda}')")
echo "gpu_check: $device"
failed=()
summary=()

# 1. the CUDA paths: bf16 autocast, channels_last, fused optimizer, deferred finite check, pinned copies, resume, NCCL
python -m pytest -q -o addopts="" -p no:cacheprovider -m cuda -rs tests/performance/test_cuda_paths.py 2>&1 | tee "$out/tests.log"
tests_status=${PIPESTATUS[0]}
summary+=("tests (pytest -m cuda): $(tail -n 1 "$out/tests.log")")
[ "$tests_status" -eq 0 ] || failed+=("tests")

# 2. a short distillation on CUDA with bf16: the demo's teacher, then KD from it (embedded digits, no files needed)
cuda=(trainer.device=cuda trainer.precision=bf16 trainer.channels_last=true trainer.progress=lines)
if python -m kdlab train configs/demo/teacher.yaml "${cuda[@]}" trainer.epochs=3 "trainer.out_dir=$out/teacher" > "$out/teacher.log" 2>&1 \
   && python -m kdlab train configs/demo/kd.yaml "${cuda[@]}" trainer.epochs=3 "teacher.checkpoint=$out/teacher" \
        "trainer.out_dir=$out/kd" > "$out/kd.log" 2>&1; then
    top1=$(python -c "import json; f = json.load(open('$out/kd/final.json')); print(f\"{f['final'].get('val_top1', float('nan')):.2f}% top-1 after {f['epochs']} epochs, {f['train_seconds']:.1f}s training\")")
    summary+=("bf16 KD run on CUDA (configs/demo/kd.yaml): $top1")
else
    failed+=("distillation run")
    summary+=("bf16 KD run on CUDA: FAILED (see $out/teacher.log, $out/kd.log)")
fi

# 3. training speed on CUDA (the CIFAR-10 JPEG benchmark; it needs ../shared's zip and teacher)
bench=benchmarks/throughput/kd_resnet56_resnet20.yaml
if [ ! -f ../shared/data/cifar10-jpg.zip ] || [ ! -f ../shared/teachers/resnet56-4bfd9763.th ]; then
    summary+=("throughput on CUDA: skipped: $bench needs ../shared/data/cifar10-jpg.zip and ../shared/teachers/resnet56-4bfd9763.th")
elif python -m kdlab bench throughput "$bench" trainer.device=cuda --seconds 16 --rounds 4 --json \
        > "$out/throughput.json" 2> "$out/throughput.log"; then
    summary+=("throughput on CUDA ($bench, images/s, best slice): $(python -c "
import json
r = json.load(open('$out/throughput.json'))
speeds = ', '.join(f\"{kind} {r[kind + '_ips']:.0f}\" for kind in r['kinds'])
ratios = ', '.join(f'{name} {value:.2f}' for name, value in r['ratios'].items())
print(f\"{speeds}; ratios {ratios}; device {r['device']}, precision {r['precision']}\")
")")
else
    failed+=("throughput")
    summary+=("throughput on CUDA: FAILED (see $out/throughput.log)")
fi

echo
echo "gpu_check summary ($device)"
for line in "${summary[@]}"; do echo "- $line"; done
echo "- files: $out"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "gpu_check: FAILED: ${failed[*]}"
    exit 1
fi
echo "gpu_check: all passed"
