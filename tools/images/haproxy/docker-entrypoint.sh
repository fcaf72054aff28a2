#!/bin/sh
# The official haproxy image's argument handling: options alone mean haproxy's, and
# haproxy runs in master-worker mode (-W, reload by SIGUSR2 or the master CLI) in the
# foreground (-db); any other command runs as given.
set -e
case "$1" in
  -*) set -- haproxy "$@" ;;
esac
if [ "$1" = haproxy ]; then
  shift
  set -- haproxy -W -db "$@"
fi
exec "$@"
