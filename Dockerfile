# The scheduler as an image; the same image runs a worker with the entrypoint `node dist/worker.js` (see
# docker-compose.yml). Node 20's major tag: the oldest release line the package supports (engines: >=20.19).

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the package's "prepare" would build before the sources are copied; the build is its own
# step below. bufferutil's install script only looks for its prebuilt binary, and ws falls back to JavaScript.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY server.ts worker.ts client.ts ./
COPY lib ./lib
RUN npm run build && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:20-bookworm-slim
WORKDIR /app
# Inside a container only the published ports reach the scheduler, so it listens on every interface; as an
# environment variable rather than a flag in CMD, so `docker run ... --host x` and -e TASKWIRE_HOST both still win.
ENV TASKWIRE_HOST=0.0.0.0
# package.json: the programs read their version through the package's own name (taskwire/package.json).
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The files stay root's: the scheduler has no reason to write to its own code.
USER node
EXPOSE 9001 9002
# The project's own client over the TCP protocol that workers and clients use, not GET /healthz: it reads
# TASKWIRE_PORT and TASKWIRE_TOKEN as the scheduler does, so a port or token set through the environment needs
# nothing here, and it works with the HTTP listener off (--http-port 0). It exits 0 when the scheduler answers and
# 2 when it is unreachable or refuses the token: Docker's reference reserves 2, but the engine counts any non-zero
# status as a failed check. --host beats the image's TASKWIRE_HOST, an address to listen on, not to connect to.
# The cost: a Node start per check, and a client joining and leaving in the scheduler's log. During the start
# period Docker Engine 25 and later probe every 5 s, so workers waiting for a healthy scheduler start promptly.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "dist/client.js", "--host", "127.0.0.1", "jobs", "--limit", "1", "--timeout", "3000"]
# Exec form: node is PID 1 and receives docker stop's SIGTERM itself, which drains the scheduler (--grace).
ENTRYPOINT ["node", "dist/server.js"]
