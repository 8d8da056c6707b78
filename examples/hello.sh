#!/bin/sh
# The example app: prints a heartbeat line every 2 seconds until Patrol stops it.
# Patrol's disable signal (SIGUSR1) and restart signal (SIGUSR2) end it cleanly.
trap 'echo "hello: stopping (disabled)"; exit 10' USR1
trap 'echo "hello: restarting"; exit 12' USR2
trap 'exit 0' TERM
echo "hello: started as $PATROL_ID (pid $$), keepalive $PATROL_KEEPALIVE"
n=0
while :; do
    n=$((n + 1))
    echo "hello: beat $n"
    sleep 2 &
    wait $!
done
