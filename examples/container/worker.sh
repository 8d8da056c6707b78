#!/bin/sh
# A stand-in for a queue worker: one line every few seconds, until it is told to stop.
trap 'echo "worker $WORKER_SLOT of $PATROL_INSTANCES: stopping"; exit 0' TERM
echo "worker $WORKER_SLOT of $PATROL_INSTANCES started as $(id -un), queue $QUEUE_URL"
while :; do sleep 5 & wait $!; echo "worker $WORKER_SLOT: idle"; done
