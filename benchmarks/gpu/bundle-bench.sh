#!/usr/bin/env bash
# Adds the op benchmarks (benchmarks/ArcherIlgpu.Benchmarks) to the GPU bundle as .gpu/bench.tar.xz,
# which run-all.sh unpacks into the CLI's app folder. Run it AFTER ../shared/gpu/bundle.sh (that one
# empties .gpu/). It publishes the benchmarks like the CLI (self-contained, invariant globalization)
# and packs only their own files: the runtime and every library are the same files the CLI bundle
# already has, so the addition is well under 1 MiB instead of another 26.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
[ -f "$root/.gpu/bundle.tar.xz" ] || { echo "build the CLI bundle first (../shared/gpu/bundle.sh src/Cli/ArcherIlgpu.Cli.csproj)"; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
dotnet publish "$root/benchmarks/ArcherIlgpu.Benchmarks/ArcherIlgpu.Benchmarks.csproj" -c Release -r linux-x64 --self-contained \
  -p:InvariantGlobalization=true -p:UseAppHost=true -o "$stage/app" >"$stage/publish.log" 2>&1 \
  || { tail -n 30 "$stage/publish.log"; exit 1; }
XZ_OPT='-6' tar -cJf "$root/.gpu/bench.tar.xz" -C "$stage/app" ArcherIlgpu.Benchmarks ArcherIlgpu.Benchmarks.dll \
  ArcherIlgpu.Benchmarks.deps.json ArcherIlgpu.Benchmarks.runtimeconfig.json
echo "bench: .gpu/bench.tar.xz ($(du -k "$root/.gpu/bench.tar.xz" | cut -f1) KiB)"
