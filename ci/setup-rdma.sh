#!/usr/bin/env bash
# Build prerequisites of the RDMA transport (transport-rdma → sideway → rdma-mummy-sys): cmake
# builds its small C shim and bindgen needs libclang. Nothing of rdma-core is needed to build
# (libibverbs is loaded at run time), so this is all the workspace needs. Idempotent and quiet;
# uses sudo when not root.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v cc >/dev/null || need+=(gcc)
# libclang itself (libclang.so or libclang-N.so), not libclang-cpp, which some images carry
# alone and bindgen cannot use.
has_libclang() {
  local d
  for d in "$@"; do
    ls "$d"/libclang.so* "$d"/libclang-[0-9]*.so* >/dev/null 2>&1 && return 0
  done
  return 1
}
if ! has_libclang /usr/lib/llvm-*/lib /usr/lib/*-linux-gnu ${LIBCLANG_PATH:+"$LIBCLANG_PATH"}; then
  need+=(libclang-dev)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "setup-rdma: install ${need[*]} (needed to build the RDMA transport)" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null 2>&1 \
  || { $SUDO apt-get update -q >/dev/null 2>&1 \
       && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null; }
echo "setup-rdma: installed ${need[*]}"
