#!/usr/bin/env bash
# Run the demo scenarios of demo/ against the cluster and print what each container got.
#
#   hack/demo.sh                         # every scenario, one after the other
#   hack/demo.sh cel-selector shared-claim
#   KEEP=1 hack/demo.sh opaque-config    # leave the namespace behind to look around
#
# Scenarios: gpu-4-3-2, shared-claim, opaque-config, cel-selector, device-plugin-pods
# (demo/<name>.yaml). Each runs in its own namespace, which is deleted afterwards (so its
# GPUs are free again). Two more need the driver in another mode, and run only when named:
#   hack/kind-install.sh --set mock.gpuMode=shared && hack/demo.sh gpu-sharing
#   hack/kind-install.sh --set mock.gpuMode=partitioned && hack/demo.sh gpu-partitions
# KUBE_CONTEXT= (empty) runs against the current kubectl context instead of kind's.
set -euo pipefail
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh"
require "$KUBECTL"

DEMO_DIR="${DEMO_DIR:-$REPO_ROOT/demo}"
ALL=(gpu-4-3-2 shared-claim opaque-config cel-selector device-plugin-pods)
POD_TIMEOUT="${POD_TIMEOUT:-180}"

# The namespace a demo file creates.
namespace_of() {
    awk '/^kind: Namespace/ {ns = 1} ns && /^  name:/ {print $2; exit}' "$DEMO_DIR/$1.yaml"
}

pod_ready() { # NS POD
    [[ "$(k -n "$1" get pod "$2" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}

pod_unschedulable() { # NS POD
    [[ "$(k -n "$1" get pod "$2" \
        -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].reason}')" == Unschedulable ]]
}

wait_ready() { # NS POD...
    local ns="$1" pod
    shift
    for pod in "$@"; do
        if ! wait_for "pod $ns/$pod to run" "$POD_TIMEOUT" pod_ready "$ns" "$pod"; then
            k -n "$ns" describe pod "$pod" | tail -25 >&2
            k -n "$ns" get resourceclaims -o wide >&2 || true
            return 1
        fi
    done
}

# The container has printed its variables (the demo pods end them with a line "---").
printed() { # NS POD CONTAINER
    k -n "$1" logs "$2" -c "$3" | grep -q -- '^---$'
}

# Print what every container of the pods printed: the GPU_DEVICE_* and DRA_* variables.
show() { # NS POD...
    local ns="$1" pod ctr
    shift
    for pod in "$@"; do
        for ctr in $(k -n "$ns" get pod "$pod" -o jsonpath='{.spec.containers[*].name}'); do
            printf '\n--- pod %s, container %s\n' "$pod" "$ctr"
            wait_for "output of $ns/$pod/$ctr" 30 printed "$ns" "$pod" "$ctr"
            k -n "$ns" logs "$pod" -c "$ctr" | sed '/^---$/,$d'
        done
    done
    echo
}

show_claims() { # NS
    k -n "$1" get resourceclaims \
        -o custom-columns='CLAIM:.metadata.name,STATE:.status.allocation.devices.results[*].device,RESERVED FOR:.status.reservedFor[*].name'
}

cleanup() { # NS
    if [[ -n "${KEEP:-}" ]]; then
        log "KEEP is set: namespace $1 stays (kubectl delete namespace $1)"
    else
        log "deleting namespace $1 (frees its GPUs)"
        k delete namespace "$1" --wait=true --timeout=120s >/dev/null
    fi
}

scenario_gpu_4_3_2() {
    local f="$DEMO_DIR/gpu-4-3-2.yaml" ns
    ns="$(namespace_of gpu-4-3-2)"
    log "4 + 3 + 2 GPUs on a node with 8: namespace, claim templates, pod gpu-4"
    k apply -f "$f" -l dra-demo/step=1
    k apply -f "$f" -l dra-demo/step=2
    wait_ready "$ns" gpu-4
    log "pod gpu-3 (7 of 8 GPUs in use after it)"
    k apply -f "$f" -l dra-demo/step=3
    wait_ready "$ns" gpu-3
    show "$ns" gpu-4 gpu-3
    log "pod gpu-2: only 1 GPU is left, so the scheduler keeps it Pending"
    k apply -f "$f" -l dra-demo/step=4
    if wait_for "pod $ns/gpu-2 to be reported unschedulable" 60 pod_unschedulable "$ns" gpu-2; then
        k -n "$ns" get pods -o wide
        printf '\nscheduler: %s\n\n' "$(k -n "$ns" get pod gpu-2 \
            -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].message}')"
    else
        log "gpu-2 was scheduled: this cluster has more than 8 free GPUs on a node"
    fi
    log "deleting pod gpu-4: its 4 GPUs are unprepared and free, gpu-2 starts"
    k -n "$ns" delete pod gpu-4 --wait=true
    wait_ready "$ns" gpu-2
    show "$ns" gpu-2
    show_claims "$ns"
    cleanup "$ns"
}

# What a container of the device-plugin pods sees of its mock GPUs.
show_mock() { # NS POD...
    local ns="$1" pod
    shift
    for pod in "$@"; do
        printf '\n--- pod %s: ls /dev/mock; ls /mock/so; list_device.sh\n' "$pod"
        k -n "$ns" exec "$pod" -- ls /dev/mock | paste -sd ' ' -
        k -n "$ns" exec "$pod" -- ls /mock/so | paste -sd ' ' -
        k -n "$ns" exec "$pod" -- list_device.sh
    done
    echo
}

scenario_device_plugin_pods() {
    local f="$DEMO_DIR/device-plugin-pods.yaml" ns
    ns="$(namespace_of device-plugin-pods)"
    log "pods written for a device plugin: ubuntu1 asks for mock.com/gpu: 4, ubuntu2 for 3"
    k apply -f "$f" -l dra-demo/step=1
    wait_ready "$ns" ubuntu1 ubuntu2
    show_mock "$ns" ubuntu1 ubuntu2
    log "ubuntu3 asks for 2: only 1 GPU is left, so the scheduler keeps it Pending"
    k apply -f "$f" -l dra-demo/step=2
    if wait_for "pod $ns/ubuntu3 to be reported unschedulable" 60 pod_unschedulable "$ns" ubuntu3; then
        k -n "$ns" get pods -o wide
        printf '\nscheduler: %s\n\n' "$(k -n "$ns" get pod ubuntu3 \
            -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].message}')"
    else
        log "ubuntu3 was scheduled: this cluster has more than 8 free GPUs on a node"
    fi
    log "deleting pod ubuntu1: its 4 GPUs are free, ubuntu3 starts"
    k -n "$ns" delete pod ubuntu1 --wait=true
    wait_ready "$ns" ubuntu3
    show_mock "$ns" ubuntu3
    log "pod mixed: a ResourceClaim of its own (1 GPU) and mock.com/gpu: 1"
    k apply -f "$f" -l dra-demo/step=3
    wait_ready "$ns" mixed
    show_mock "$ns" mixed
    k -n "$ns" get resourceclaims \
        -o custom-columns='CLAIM:.metadata.name,DEVICES:.status.allocation.devices.results[*].device,POD:.status.reservedFor[*].name'
    cleanup "$ns"
}

# The driver publishes in MODE (shared: shareable GPUs; partitioned: counter sets).
require_mode() { # MODE
    local jsonpath
    case "$1" in
    shared) jsonpath='{.items[*].spec.devices[*].allowMultipleAllocations}' ;;
    partitioned) jsonpath='{.items[*].spec.sharedCounters[*].name}' ;;
    esac
    [[ -n "$(k get resourceslices --field-selector "spec.driver=$DRIVER_NAME" -o jsonpath="$jsonpath")" ]] ||
        die "the driver does not publish $1 GPUs: hack/kind-install.sh --set mock.gpuMode=$1"
}

scheduler_says() { # NS POD
    printf '\nscheduler: %s\n\n' "$(k -n "$1" get pod "$2" \
        -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].message}')"
}

scenario_gpu_sharing() {
    local f="$DEMO_DIR/gpu-sharing.yaml" ns
    require_mode shared
    ns="$(namespace_of gpu-sharing)"
    log "pods sharer-a and sharer-b: 30Gi of gpu-0's 80Gi each"
    k apply -f "$f" -l dra-demo/step=1
    wait_ready "$ns" sharer-a sharer-b
    show "$ns" sharer-a sharer-b
    k -n "$ns" get resourceclaims \
        -o custom-columns='CLAIM:.metadata.name,DEVICE:.status.allocation.devices.results[*].device,SHARE:.status.allocation.devices.results[*].shareID,MEMORY:.status.allocation.devices.results[*].consumedCapacity.memory'
    log "pod sharer-c: 30Gi more does not fit on gpu-0, so it waits"
    k apply -f "$f" -l dra-demo/step=2
    wait_for "pod $ns/sharer-c to be reported unschedulable" 60 pod_unschedulable "$ns" sharer-c
    scheduler_says "$ns" sharer-c
    log "deleting pod sharer-a: sharer-b keeps its share, sharer-c gets one"
    k -n "$ns" delete pod sharer-a --wait=true
    wait_ready "$ns" sharer-c
    show "$ns" sharer-c
    cleanup "$ns"
}

scenario_gpu_partitions() {
    local f="$DEMO_DIR/gpu-partitions.yaml" ns
    require_mode partitioned
    ns="$(namespace_of gpu-partitions)"
    log "pod halves (2 halves, GpuConfig time-slicing) and pod quarter (1 quarter)"
    k apply -f "$f"
    wait_ready "$ns" halves quarter
    show "$ns" halves quarter
    show_claims "$ns"
    k get resourceslices --field-selector "spec.driver=$DRIVER_NAME" \
        -o custom-columns='SLICE:.metadata.name,COUNTER SETS:.spec.sharedCounters[*].name'
    cleanup "$ns"
}

scenario_simple() { # NAME TITLE
    local name="$1" ns pods
    ns="$(namespace_of "$name")"
    log "$2"
    k apply -f "$DEMO_DIR/$name.yaml"
    read -r -a pods <<<"$(k -n "$ns" get pods -o jsonpath='{.items[*].metadata.name}')"
    wait_ready "$ns" "${pods[@]}"
    k -n "$ns" get pods -o wide
    show "$ns" "${pods[@]}"
    show_claims "$ns"
    cleanup "$ns"
}

run_scenario() {
    case "$1" in
    gpu-4-3-2) scenario_gpu_4_3_2 ;;
    shared-claim) scenario_simple shared-claim "one claim, one GPU, three containers in two pods" ;;
    opaque-config) scenario_simple opaque-config "opaque GpuConfig: time-slicing, exclusive, env" ;;
    cel-selector) scenario_simple cel-selector "a CEL selector: two GPUs with index < 2" ;;
    device-plugin-pods) scenario_device_plugin_pods ;;
    gpu-sharing) scenario_gpu_sharing ;;
    gpu-partitions) scenario_gpu_partitions ;;
    *) die "unknown scenario $1 (known: ${ALL[*]} gpu-sharing gpu-partitions)" ;;
    esac
}

k get deviceclass "$DRIVER_NAME" >/dev/null ||
    die "no DeviceClass $DRIVER_NAME: install the driver first (hack/kind-install.sh)"

scenarios=("$@")
if [[ ${#scenarios[@]} -eq 0 ]]; then
    scenarios=("${ALL[@]}")
fi
for s in "${scenarios[@]}"; do
    run_scenario "$s"
done
log "demo done"
