/**
 * How long our HTTP clients keep an idle keep-alive connection: below the idle close of every server
 * they talk to, so that a request is never written on a connection the server is closing at that moment
 * (the request then fails with "other side closed" / ECONNRESET, and a router would count it against
 * the worker).
 *
 * The servers: SGLang's HTTP server is uvicorn with `timeout_keep_alive=5` (s); the router and the
 * simulator are uWS, which closes a connection idle for 10 s (uSockets checks timeouts on a 4 s tick,
 * so in practice somewhere after 8 s). 4 s leaves a second for the closing side's FIN to arrive first.
 * Servers that announce `Keep-Alive: timeout=N` are honoured too (less a margin) by both clients.
 */
export const CLIENT_KEEP_ALIVE_MS = 4_000;
