# nginx with ngx_http_room_affinity_module, and the ra-agent.
#
#   docker build -t room-affinity .
#   docker run --rm -p 8080:8080 \
#       -e RA_BACKENDS=10.0.0.11:3000,10.0.0.12:3000 \
#       -e RA_REDIS=10.0.0.5:6379 room-affinity
#
# The environment variables are listed in docs/operations.md; print the
# generated nginx.conf with "docker run --rm -e RA_BACKENDS=... room-affinity
# render".  The module is built against Debian bookworm's nginx (the
# nginx-dev package), so it loads into the nginx package of the final stage.

# ---- build: the same commands as on a development machine ----
FROM debian:bookworm AS build

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends make

WORKDIR /src
COPY . .

# make deps: the Debian packages (nginx-dev, libhiredis-dev, libjansson-dev,
# the compiler...); make: build/ngx_http_room_affinity_module.so, agent/ra-agent
RUN make deps && make

# ---- run: Debian's nginx, the module, the agent, the config template ----
FROM debian:bookworm-slim

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        nginx libhiredis0.14 libjansson4 libssl3 gettext-base \
    && rm -rf /var/lib/apt/lists/* \
    && rm -f /etc/nginx/sites-enabled/default

COPY --from=build /src/build/ngx_http_room_affinity_module.so /usr/lib/nginx/modules/
COPY --from=build /src/agent/ra-agent /usr/local/bin/ra-agent
COPY docker/nginx.conf.template /etc/nginx/room-affinity/nginx.conf.template
COPY docker/entrypoint.sh /usr/local/bin/room-affinity-entrypoint

# for a config of your own that includes modules-enabled/*.conf, as
# Debian's does
RUN echo 'load_module modules/ngx_http_room_affinity_module.so;' \
        > /etc/nginx/modules-enabled/50-mod-http-room-affinity.conf \
    && nginx -t

EXPOSE 8080
STOPSIGNAL SIGQUIT
ENTRYPOINT ["room-affinity-entrypoint"]
CMD ["nginx", "-g", "daemon off;"]
