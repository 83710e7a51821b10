#!/usr/bin/env bash
# Reproduce the generated tables of README.md (Performance, samedge-tiny accuracy)
# on this machine, with one command:
#
#     bash benchmarks/reproduce.sh                         # all of them
#     bash benchmarks/reproduce.sh samedge_tiny mobile_sam # some of them
#
# Steps: samedge_tiny (fp32 + its own fp16/int8 builds), mobile_sam (fp32 +
# fp16/int8 builds + the peers), sam_vit_b (fp32 + the peers), samedge-tiny's
# held-out accuracy, decoder (MobileSAM's decoder per object at B=1/4/16, SAM's
# own predict_masks vs samedge's batched export, ONNX Runtime and OpenVINO:
# results/<machine>/decoder_batch.md), ort_spinning (a MobileSAM frame on ONNX
# Runtime with its threads stopping or spinning after each run, encoder and
# decoder timed through the Predictor: results/<machine>/ort_spinning.md; needs
# the decoder step's export), prepost (pre-/post-processing share of
# a streamed frame, exact vs fast paths: results/<machine>/prepost.md),
# frame_size (MobileSAM's encoder on 640x480 / 1280x720 content vs the padded
# square, speed and mask agreement: results/<machine>/frame_size.md),
# profile (where the encoders' time goes on OpenVINO, per op type and kernel
# precision, fp32 vs int8 and the OpenVINO notebook's encoder and INT8, also under the VNNI cap:
# results/<machine>/profile_encoder_*.md; needs the mobile_sam and sam_vit_b steps' builds),
# video (memory tracking per frame and per graph with 1/3/8 objects beside Meta's
# PyTorch SAM2VideoPredictor, edgetam and sam2.1_hiera_tiny: bench_video_*.md;
# opt-in, about 40 minutes here: `bash benchmarks/reproduce.sh video`),
# then the README's tables (`python benchmarks/readme.py`)
# and the project's goal verdicts (`python benchmarks/goals.py`, results/<machine>/goals.md).
# The peers are timed beside a saved report by `python benchmarks/peers.py add`. Each step writes
# JSON, markdown and a PNG into benchmarks/results/<machine>/ and records its
# exact command, the machine and every library version.
#
# Needs the export, openvino and calibration extras (`pip install -e
# '.[export,openvino,calibration,dev]'`) and, for the samexporter peer, its own
# environment (`python benchmarks/peers.py setup-samexporter`; without it
# that peer is reported as left out and the others still run).
#
# Time on the 2-core AMD EPYC of benchmarks/results/amd-epyc-2c (2026-12-03, the
# samexporter venv already made): mobile_sam 13 minutes and sam_vit_b 34 (both with a fresh
# random-weight export and their builds, made again whenever the exporters' code changed;
# the sam_vit_b INT8 build is 5 of them, its PyTorch encoder takes 13-30 s a run there),
# decoder 2, ort_spinning 2, prepost 3, profile 5; samedge_tiny, eval and frame_size a few
# minutes each
# (frame_size's three exports add several when the exporters' code changed).
# Other processes on the machine add
# noise to the latencies; the peer ratios are measured in the same run, so
# they hold better than absolute times.
#
# SAMEDGE_MACHINE=name overrides the results folder's name (default: from the
# hardware, e.g. amd-epyc-2c). SAMEDGE_BENCH_NOTE adds a line to every result.
set -euo pipefail

cd "$(dirname "$0")/.."
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(samedge_tiny mobile_sam sam_vit_b eval decoder ort_spinning prepost frame_size profile)

machine="${SAMEDGE_MACHINE:-$(python -c 'from samedge.bench import machine_name; print(machine_name())')}"
results="benchmarks/results/$machine"
bench_work="${XDG_CACHE_HOME:-$HOME/.cache}/samedge/bench"
work="$bench_work/profile"
common=(--points 1 --objects 1,4,16 --peak-size 2048 --isa-cap --machine "$machine" --output "$results")
[ -n "${SAMEDGE_BENCH_NOTE:-}" ] && common+=(--note "$SAMEDGE_BENCH_NOTE")

for step in "${steps[@]}"; do
    echo "== reproduce: $step" >&2
    case "$step" in
        samedge_tiny)
            samedge bench samedge_tiny --builds fp16,int8 --runs 20 --warmup 3 \
                --accuracy-frames 2 "${common[@]}"
            ;;
        mobile_sam)
            samedge bench mobile_sam --builds fp16,int8 --build-arg=--frames=16 \
                --build-arg=--heldout=4 --runs 5 --warmup 1 --accuracy-frames 2 \
                --name bench_mobile_sam "${common[@]}"
            python benchmarks/peers.py add "$results/bench_mobile_sam.json"
            ;;
        sam_vit_b)
            # Its INT8 build (attention MatMuls int8, as `samedge build` does by default;
            # 8 calibration frames for time) peaks at 9.7 GiB of memory (results/amd-epyc-2c/
            # calibration_memory.md) and took 4.7 minutes here on 2026-12-03 (the bench
            # report's built_by): only on machines with 14 GiB or more, fp32 alone elsewhere.
            int8=()
            mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)
            if [ "${mem_kib:-0}" -ge $((14 * 1024 * 1024)) ]; then
                int8=(--builds int8 --build-arg=--frames=8 --build-arg=--heldout=2)
            fi
            samedge bench sam_vit_b --parts encoder,decoder --runs 3 --warmup 1 \
                --accuracy-frames 1 --name bench_sam_vit_b_peers "${int8[@]}" "${common[@]}"
            python benchmarks/peers.py add "$results/bench_sam_vit_b_peers.json"
            ;;
        eval)
            samedge eval samedge_tiny --scenes 200 --output "$results/eval_samedge_tiny.json"
            ;;
        decoder)
            # Exports MobileSAM (random weights) twice into $work the first time.
            # One thread and process CPU time: robust to other load (see the file's Reading).
            python benchmarks/profile_decoder.py --export mobile_sam --work "$work" \
                --threads 1 --clock cpu --objects 1,4,16 --runs 7 --ops \
                --output "$results/decoder_batch.md"
            ;;
        ort_spinning)
            # Needs the decoder step's MobileSAM export. Wall time, 2 threads per session:
            # what the setting changes is how two sessions share the cores.
            python benchmarks/profile_ort_spinning.py --model "$work/mobile_sam-decoder-batched" \
                --threads 2 --rounds 4 --frames 6 --output "$results/ort_spinning.md"
            ;;
        prepost)
            # Needs the decoder step's MobileSAM export.
            python benchmarks/profile_prepost.py --model samedge_tiny \
                --model "$work/mobile_sam-decoder-batched" --backend openvino --clock cpu \
                --frames 640x480,1280x720 --objects 1,16 --runs 5 --output "$results/prepost.md"
            ;;
        frame_size)
            # MobileSAM (random weights) square and for 640x480 / 1280x720 frames; each
            # --frame-size export searches the margin that passes the gate (minutes).
            # Reused while the exporters' code is the one that made them (the card's hash).
            current=$(python -c 'from samedge.exporters.graphs import exported_with as w; print(w()["exporters_sha256"])')
            for size in square 640x480 1280x720; do
                made=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["details"].get("exported_with", {}).get("exporters_sha256", ""))' \
                    "$work/mobile_sam-$size/samedge.json" 2>/dev/null || true)
                [ "$made" = "$current" ] && continue
                flag=(); [ "$size" != square ] && flag=(--frame-size "$size")
                samedge -q export mobile_sam --random-weights -o "$work/mobile_sam-$size" --force "${flag[@]}"
            done
            python benchmarks/bench_frame_size.py --runs 7 --machine "$machine" \
                "$work/mobile_sam-square:$work/mobile_sam-640x480" \
                "$work/mobile_sam-square:$work/mobile_sam-1280x720" \
                --output "$results/frame_size.json"
            ;;
        profile)
            # The cap only means something on a CPU above it (AMX or AVX-512 bf16).
            cap=(); grep -qw avx512_vnni /proc/cpuinfo 2>/dev/null && cap=(--isa-cap AVX512_CORE_VNNI)
            for model in mobile_sam sam_vit_b; do
                dirs=()
                for p in fp32 int8; do
                    [ -f "$bench_work/$model-seed0/$p/samedge.json" ] && dirs+=("$bench_work/$model-seed0/$p")
                done
                [ ${#dirs[@]} -eq 0 ] && { echo "reproduce: profile: no $model build in $bench_work; run its step first" >&2; continue; }
                # The OpenVINO notebook recipe's IRs (its converted encoder and its NNCF INT8,
                # made by the peers' run) beside samedge's: which kernels each runs, where the
                # time differs, timed in one process.
                for xml in "$bench_work"/peers/peers/openvino-notebook/"$model"-*/encoder{,_int8}.xml; do
                    [ -f "$xml" ] && dirs+=("$xml")
                done
                python benchmarks/profile_encoder.py "${dirs[@]}" --hint default,f32 "${cap[@]}" \
                    --runs 3 --output "$results/profile_encoder_$model.md"
            done
            ;;
        video)
            # SAM 2.1-T's frames are slow here (seconds each): 2 timed frames right after the
            # prompted one; EdgeTAM's bank fills over its 3 warm-up frames first.
            samedge bench edgetam --video --objects 1,3,8 --warmup 3 --frames 3 \
                --machine "$machine" --output "$results" --name bench_video_edgetam
            python benchmarks/video_peer.py "$results/bench_video_edgetam.json" --frames 3
            samedge bench sam2.1_hiera_tiny --video --objects 1,3,8 --warmup 0 --frames 2 \
                --machine "$machine" --output "$results" --name bench_video_sam2.1_hiera_tiny
            python benchmarks/video_peer.py "$results/bench_video_sam2.1_hiera_tiny.json" --frames 2
            ;;
        *)
            echo "reproduce.sh: unknown step '$step'; expected samedge_tiny, mobile_sam, sam_vit_b, eval, decoder, ort_spinning, prepost, frame_size, profile or video" >&2
            exit 2
            ;;
    esac
done
python benchmarks/readme.py
python benchmarks/goals.py
