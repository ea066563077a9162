#!/usr/bin/env bash
# Builds the image the real-engine supervisor tests run (docs/supervisor.md): FROM scratch
# with Debian's statically linked busybox, so no registry is needed. Its default command
# serves HTTP on 127.0.0.1:$PORT (host networking only in CI); tests pass their own port
# and commands (`httpd -f -p 127.0.0.1:PORT`, a memory hog for the OOM test).
#
#   bash scripts/docker-test-image.sh            # builds sparklio-test-busybox:latest
#   IMAGE=name:tag bash scripts/docker-test-image.sh
set -euo pipefail

IMAGE=${IMAGE:-sparklio-test-busybox:latest}
BUSYBOX=${BUSYBOX:-/bin/busybox}

if [[ ! -x "$BUSYBOX" ]] || [[ "$(ldd "$BUSYBOX" 2>&1 || true)" != *"not a dynamic executable"* ]]; then
    echo "$BUSYBOX is not statically linked: install Debian's busybox-static" >&2
    exit 1
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/bin" "$ctx/www" "$ctx/tmp"
cp "$BUSYBOX" "$ctx/bin/busybox"
for applet in sh httpd sleep cat echo head dd kill; do
    ln -s busybox "$ctx/bin/$applet"
done
echo ok >"$ctx/www/index.html"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY bin /bin
COPY www /www
COPY tmp /tmp
ENV PATH=/bin
WORKDIR /www
CMD ["/bin/busybox", "httpd", "-f", "-p", "127.0.0.1:18080", "-h", "/www"]
DOCKERFILE
# The classic builder: no BuildKit component needed, nothing pulled for FROM scratch.
DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$ctx" >/dev/null 2>"$ctx/build.err" || {
    cat "$ctx/build.err" >&2
    exit 1
}
echo "built $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE") bytes)"
