#!/usr/bin/env bash
# The official YOLOX code (PyPI `yolox==0.3.0`) in its own virtualenv, as the baseline of
# benchmarks/official_compare.py. Benchmark-only: never a dependency of yolox-ray, never in the
# project's environment, never in CI.
#
#   scripts/install_official_yolox.sh [VENV]        (default VENV: ../venv-official beside the repo)
#
# The venv sees the system site-packages, so it uses the project's torch (CPU build), numpy, cv2,
# pycocotools, ray and mlflow unchanged; only the official package and its small pure-Python
# imports go into the venv, all with --no-deps (yolox 0.3.0 pins onnx==1.8.1 / onnxruntime==1.8.0,
# which do not install on this Python, and would pull torchvision). What that leaves out:
# - torchvision: official yolox imports it only for NMS (yolox/utils/boxes.py, evaluation). PyPI's
#   torchvision wheels are CUDA builds (_C.so links libc10_cuda.so) and fail to import next to a
#   CPU torch ("operator torchvision::nms does not exist"), so it is not installed (and removed from
#   the venv if an earlier attempt put it there). When torchvision does not import, the benchmark
#   registers a stand-in module whose ops.batched_nms is yolox_ray's exact NMS, so its eval section
#   runs the official evaluation with that NMS (see its docstring).
# - tensorboard: only yolox.core.trainer imports it, and that Trainer cannot run on a CPU anyway.
# The C++ op yolox.layers.fast_cocoeval is compiled at install time by torch.utils.cpp_extension
# (needs g++; `wheel` in the venv because --no-build-isolation builds with the venv's setuptools).
# Idempotent: each step checks first and says what it did. torch must stay the same build.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$(dirname "$repo")/venv-official}"
python="${PYTHON:-python3}"
version="0.3.0"

if [ -x "$venv/bin/python" ]; then
    echo "venv: $venv exists"
else
    "$python" -m venv --system-site-packages "$venv"
    echo "venv: created $venv (--system-site-packages, from $("$python" -c 'import sys; print(sys.executable)'))"
fi
py="$venv/bin/python"
pip=("$py" -m pip install --no-deps --disable-pip-version-check)

torch_before="$("$py" -c 'import torch; print(torch.__version__)')" || {
    echo "error: torch does not import in $venv; install the project's environment first" >&2; exit 1; }
echo "torch: $torch_before (from the system site-packages)"

if "$py" -c 'import wheel' 2>/dev/null; then
    echo "wheel: present"
else
    "${pip[@]}" -q wheel && echo "wheel: installed (the sdist build below needs bdist_wheel)"
fi

for mod in loguru tabulate thop ninja; do
    if "$py" -c "import $mod" 2>/dev/null; then
        echo "$mod: present"
    else
        "${pip[@]}" -q "$mod" && echo "$mod: installed"
    fi
done

installed="$("$py" -c 'import importlib.metadata as m; print(m.version("yolox"))' 2>/dev/null || true)"
if [ "$installed" = "$version" ] && "$py" -c 'import importlib.util as u; assert u.find_spec("yolox.layers.fast_cocoeval")' 2>/dev/null; then
    echo "yolox: $version present (with the compiled fast_cocoeval op)"
else
    echo "yolox: building $version from the PyPI sdist (compiles fast_cocoeval with g++; minutes on 2 cores)"
    "${pip[@]}" --no-build-isolation "yolox==$version"
    echo "yolox: installed $version"
fi

tv_site="$("$py" - <<'EOF'
import importlib.util, sys
spec = importlib.util.find_spec("torchvision")
print(spec.origin if spec and spec.origin and spec.origin.startswith(sys.prefix) else "")
EOF
)"
if "$py" -c 'import torchvision' 2>/dev/null; then
    echo "torchvision: imports (the official NMS will work)"
elif [ -n "$tv_site" ]; then
    "$py" -m pip uninstall -y -q torchvision
    echo "torchvision: removed from the venv (its wheel does not load with torch $torch_before)"
else
    echo "torchvision: not installed (PyPI's wheels need a CUDA torch); the benchmark registers a stand-in whose batched_nms is yolox_ray's exact NMS"
fi

torch_after="$("$py" -c 'import torch; print(torch.__version__)')"
if [ "$torch_after" != "$torch_before" ]; then
    echo "error: torch changed from $torch_before to $torch_after" >&2; exit 1
fi
echo "torch: still $torch_after"
PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$py" "$repo/benchmarks/official_compare.py" --check
echo "run:  PYTHONPATH=$repo $py $repo/benchmarks/official_compare.py"
