#!/bin/sh
# hello: the example app courier's patch service keeps up to date.
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/conf/defaults.conf"
. "$here/lib/name.sh"
if [ "$1" = "--self-test" ]; then
    [ -n "$GREETING" ] || { echo "self-test failed: GREETING is empty" >&2; exit 1; }
    [ "$(name)" = world ] || { echo "self-test failed: name is $(name)" >&2; exit 1; }
    echo "self-test passed (hello $(cat "$here/VERSION"))"
    exit 0
fi
echo "$GREETING, $(name)"
