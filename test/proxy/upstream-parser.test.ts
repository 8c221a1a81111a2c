import t from 'tap';
import { ParserState, ResponseParser, type ResponseSink } from '../../src/proxy/upstream/response-parser.js';

interface Parsed {
  heads: { status: number; text: string; headers: string[] }[];
  body: string;
  bodyChunks: number;
  trailers: string[] | null;
  state: ParserState;
  error: (Error & { code?: string }) | null;
  keepAlive: boolean;
  keepAliveTimeoutMs: number;
  /** Bytes left after the message ended in the last execute(). */
  leftover: number;
}

class Recorder implements ResponseSink {
  heads: Parsed['heads'] = [];
  parts: Buffer[] = [];
  pauseOnBody = false;
  onHead(status: number, text: string, headers: string[]): boolean {
    this.heads.push({ status, text, headers });
    return true;
  }
  onBody(chunk: Buffer): boolean {
    // Copy: a test that keeps views into buffers it later reuses would hide bugs.
    this.parts.push(Buffer.from(chunk));
    return !this.pauseOnBody;
  }
}

function parse(pieces: (Buffer | string)[], opts: { noBody?: boolean; max?: number; eof?: boolean } = {}): Parsed {
  const rec = new Recorder();
  const p = new ResponseParser(rec, opts.max ?? 16 * 1024);
  p.reset(opts.noBody ?? false);
  let leftover = 0;
  for (const piece of pieces) {
    const buf = typeof piece === 'string' ? Buffer.from(piece, 'latin1') : piece;
    const at = p.execute(buf, 0);
    if (at < 0) break;
    if (p.state === ParserState.Done) {
      leftover = buf.length - at;
      break;
    }
  }
  if (opts.eof === true && p.state !== ParserState.Failed) p.finish();
  const body = Buffer.concat(rec.parts).toString('latin1');
  return { heads: rec.heads, body, bodyChunks: rec.parts.length, trailers: p.trailers, state: p.state, error: p.error as Parsed['error'], keepAlive: p.keepAlive, keepAliveTimeoutMs: p.keepAliveTimeoutMs, leftover };
}

/** Every way of cutting `text` in two, and in three for short texts. */
function* splits(text: string): Generator<string[]> {
  for (let i = 1; i < text.length; i++) yield [text.slice(0, i), text.slice(i)];
  if (text.length <= 160) {
    for (let i = 1; i < text.length; i++) for (let j = i + 1; j < text.length; j++) yield [text.slice(0, i), text.slice(i, j), text.slice(j)];
  }
}

const CL_RESPONSE = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Dup: a\r\nx-dup: b\r\nContent-Length: 11\r\n\r\nhello world';
const CHUNKED_RESPONSE =
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n' +
  '5;name=value;flag\r\nhello\r\n' +
  '6 ; ext="q"\r\n world\r\n' +
  'A\r\n0123456789\r\n' +
  '0\r\nX-Trailer: t1\r\nX-Other:  two \r\n\r\n';

t.test('status line, headers in their case, repeated headers kept, content-length body', async (t) => {
  const r = parse([CL_RESPONSE]);
  t.equal(r.state, ParserState.Done);
  t.same(r.heads, [{ status: 200, text: 'OK', headers: ['Content-Type', 'text/plain', 'X-Dup', 'a', 'x-dup', 'b', 'Content-Length', '11'] }]);
  t.equal(r.body, 'hello world');
  t.equal(r.keepAlive, true);
  t.equal(r.leftover, 0);
  const noReason = parse(['HTTP/1.1 404\r\ncontent-length: 0\r\n\r\n']);
  t.equal(noReason.heads[0]?.status, 404);
  t.equal(noReason.heads[0]?.text, '');
  t.equal(noReason.state, ParserState.Done);
  const emptyReason = parse(['HTTP/1.1 500 \r\ncontent-length: 0\r\n\r\n']);
  t.equal(emptyReason.heads[0]?.text, '');
  const spaces = parse(['HTTP/1.1 200 OK\r\nX-A:   padded value \t\r\nX-B:\r\ncontent-length: 0\r\n\r\n']);
  t.same(spaces.heads[0]?.headers, ['X-A', 'padded value', 'X-B', '', 'content-length', '0'], 'optional whitespace trimmed, empty values kept');
});

t.test('chunked: extensions skipped, data joined, trailers returned', async (t) => {
  const r = parse([CHUNKED_RESPONSE]);
  t.equal(r.state, ParserState.Done);
  t.equal(r.body, 'hello world0123456789');
  t.same(r.trailers, ['X-Trailer', 't1', 'X-Other', 'two']);
  const noTrailers = parse(['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n']);
  t.equal(noTrailers.body, 'abc');
  t.equal(noTrailers.trailers, null);
  t.equal(noTrailers.state, ParserState.Done);
  const upper = parse(['HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n1F\r\n' + 'x'.repeat(31) + '\r\n0\r\n\r\n']);
  t.equal(upper.body.length, 31, 'hex digits in either case; chunked as the last of several codings');
});

t.test('a response split at every byte boundary parses the same', async (t) => {
  for (const text of [CL_RESPONSE, CHUNKED_RESPONSE]) {
    const whole = parse([text]);
    let mismatches = 0;
    let cases = 0;
    for (const pieces of splits(text)) {
      cases++;
      const r = parse(pieces);
      if (r.state !== ParserState.Done || r.body !== whole.body || JSON.stringify(r.heads) !== JSON.stringify(whole.heads) || JSON.stringify(r.trailers) !== JSON.stringify(whole.trailers)) mismatches++;
    }
    t.equal(mismatches, 0, `${cases} splittings of a ${text.length}-byte response`);
    const bytewise = parse(text.split(''));
    t.equal(bytewise.body, whole.body, 'one byte per execute()');
    t.same(bytewise.trailers, whole.trailers);
  }
});

t.test('1xx answers are skipped; 101 is an error', async (t) => {
  const r = parse(['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n' + CL_RESPONSE]);
  t.equal(r.heads.length, 1, 'only the final response reaches the sink');
  t.equal(r.heads[0]?.status, 200);
  t.equal(r.body, 'hello world');
  const split = parse(['HTTP/1.1 100 Continue\r\n', '\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok']);
  t.equal(split.body, 'ok');
  const upgrade = parse(['HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n']);
  t.equal(upgrade.state, ParserState.Failed);
  t.equal(upgrade.error?.name, 'HTTPParserError');
});

t.test('HEAD, 204 and 304 have no body whatever the headers say', async (t) => {
  const head = parse(['HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n'], { noBody: true });
  t.equal(head.state, ParserState.Done);
  t.equal(head.body, '');
  t.equal(head.keepAlive, true);
  const headChunked = parse(['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n'], { noBody: true });
  t.equal(headChunked.state, ParserState.Done);
  for (const status of [204, 304]) {
    const r = parse([`HTTP/1.1 ${status} X\r\ncontent-length: 10\r\n\r\n`]);
    t.equal(r.state, ParserState.Done, `${status} ends at its head`);
    t.equal(r.body, '');
  }
});

t.test('close-delimited bodies end with the connection; such a connection is not reused', async (t) => {
  const r = parse(['HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npart one, ', 'part two'], { eof: true });
  t.equal(r.state, ParserState.Done);
  t.equal(r.body, 'part one, part two');
  t.equal(r.keepAlive, false);
  const cut = parse(['HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc'], { eof: true });
  t.equal(cut.state, ParserState.BodyLength, 'a content-length body cut short is not complete');
  const otherCoding = parse(['HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nzz'], { eof: true });
  t.equal(otherCoding.state, ParserState.Done, 'a coding we do not decode, not chunked: read to the end');
  t.equal(otherCoding.keepAlive, false);
});

t.test('keep-alive: HTTP/1.0, Connection: close and Keep-Alive: timeout=', async (t) => {
  t.equal(parse(['HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n']).keepAlive, false, 'HTTP/1.0 closes by default');
  t.equal(parse(['HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n']).keepAlive, true);
  t.equal(parse(['HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n']).keepAlive, false);
  t.equal(parse(['HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n']).keepAlive, false);
  const ka = parse(['HTTP/1.1 200 OK\r\nKeep-Alive: max=100, timeout=5\r\ncontent-length: 0\r\n\r\n']);
  t.equal(ka.keepAliveTimeoutMs, 5000);
  t.equal(parse(['HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n']).keepAliveTimeoutMs, -1);
  const both = parse(['HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n']);
  t.equal(both.body, 'abc', 'chunked wins over content-length');
  t.equal(both.keepAlive, false, 'but the connection is not trusted afterwards');
  t.equal(parse(['HTTP/1.1 200 OK\r\ncontent-length: 3\r\nContent-Length: 3\r\n\r\nabc']).body, 'abc', 'identical repeated content-length accepted');
});

t.test('malformed heads are rejected with HTTPParserError', async (t) => {
  const bad: [string, string][] = [
    ['HTTP/1.1 200 OK\r\nX-A: one\r\n  folded\r\ncontent-length: 0\r\n\r\n', 'obs-fold'],
    ['HTTP/1.1 200 OK\r\nX-A: one\r\n\tfolded\r\ncontent-length: 0\r\n\r\n', 'obs-fold with a tab'],
    ['HTTP/1.1 200 OK\r\nX-A : one\r\ncontent-length: 0\r\n\r\n', 'space before the colon'],
    ['HTTP/1.1 200 OK\r\nX A: one\r\ncontent-length: 0\r\n\r\n', 'space inside a name'],
    ['HTTP/1.1 200 OK\r\n: one\r\ncontent-length: 0\r\n\r\n', 'empty name'],
    ['HTTP/1.1 200 OK\r\nno colon here\r\ncontent-length: 0\r\n\r\n', 'no colon'],
    ['HTTP/1.1 200 OK\nX-A: one\r\ncontent-length: 0\r\n\r\n', 'bare LF line end'],
    ['HTTP/1.1 200 OK\r\nX-A: o\rne\r\ncontent-length: 0\r\n\r\n', 'bare CR in a value'],
    ['HTTP/1.1 200 OK\r\nX-A: o\x00ne\r\ncontent-length: 0\r\n\r\n', 'NUL in a value'],
    ['HTTP/1.1 200 OK\r\nX-A: o\x1bne\r\ncontent-length: 0\r\n\r\n', 'ESC in a value'],
    ['HTTP/2.0 200 OK\r\ncontent-length: 0\r\n\r\n', 'HTTP/2.0'],
    ['HTTP/1.1 20 OK\r\ncontent-length: 0\r\n\r\n', 'two-digit status'],
    ['HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n', 'four-digit status'],
    ['HTTP/1.1  200 OK\r\ncontent-length: 0\r\n\r\n', 'double space'],
    ['HTTP/1.1 200OK\r\ncontent-length: 0\r\n\r\n', 'no space before the reason'],
    ['XTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n', 'not HTTP'],
    ['\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n', 'leading empty line'],
    ['HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd', 'conflicting content-length'],
    ['HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\nabc', 'content-length list'],
    ['HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n', 'negative content-length'],
    ['HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n', 'hex content-length'],
    ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n', 'chunked not last'],
    ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n', 'chunked twice'],
  ];
  for (const [text, why] of bad) {
    const r = parse([text]);
    t.equal(r.state, ParserState.Failed, why);
    t.equal(r.error?.name, 'HTTPParserError', `${why}: ${r.error?.message}`);
    t.match(r.error?.code ?? '', /^HPE_/, `${why}: an llhttp-style code`);
    t.equal(r.heads.length, 0, `${why}: nothing reached the sink`);
  }
});

t.test('malformed chunked bodies are rejected', async (t) => {
  const head = 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n';
  const bad: [string, string][] = [
    ['zz\r\n', 'not hex'],
    ['\r\n', 'empty size'],
    [';ext\r\n', 'extension without a size'],
    ['5\nhello\r\n0\r\n\r\n', 'bare LF after the size'],
    ['5\r\nhelloX\r\n0\r\n\r\n', 'no CRLF after the data'],
    ['5\r\nhello\rX', 'CR not followed by LF after the data'],
    ['1234567890abc\r\n', 'size too large'],
    ['5;a=\x01\r\nhello\r\n0\r\n\r\n', 'control character in an extension'],
    ['5 x\r\nhello\r\n0\r\n\r\n', 'junk after the size'],
    ['0\r\n folded: t\r\n\r\n', 'obs-fold in trailers'],
    ['0\r\nNo-Colon\r\n\r\n', 'trailer without a colon'],
    ['0\r\nX: a\nb\r\n\r\n', 'bare LF in a trailer'],
    ['0\r\n\rX', 'CR not followed by LF at the end'],
  ];
  for (const [body, why] of bad) {
    const r = parse([head + body]);
    t.equal(r.state, ParserState.Failed, why);
    t.equal(r.error?.name, 'HTTPParserError', `${why}: ${r.error?.message}`);
  }
  const longExt = parse([head + `5;${'e'.repeat(5000)}\r\nhello\r\n0\r\n\r\n`]);
  t.equal(longExt.state, ParserState.Failed, 'chunk extensions are bounded');
});

t.test('header and trailer sections are bounded (no unbounded buffers)', async (t) => {
  const big = `HTTP/1.1 200 OK\r\nX-Big: ${'v'.repeat(2000)}\r\ncontent-length: 0\r\n\r\n`;
  const one = parse([big], { max: 1024 });
  t.equal(one.state, ParserState.Failed);
  t.equal(one.error?.code, 'UND_ERR_HEADERS_OVERFLOW');
  const pieces = parse(big.match(/[\s\S]{1,100}/g)!, { max: 1024 });
  t.equal(pieces.error?.code, 'UND_ERR_HEADERS_OVERFLOW', 'also when it arrives in pieces');
  // A head that never ends: refused once it passes the bound, not buffered forever.
  const endless = parse(['HTTP/1.1 200 OK\r\n', ...Array.from({ length: 50 }, (_, i) => `X-${i}: ${'z'.repeat(40)}\r\n`)], { max: 1024 });
  t.equal(endless.error?.code, 'UND_ERR_HEADERS_OVERFLOW');
  t.equal(parse([big], { max: 4096 }).state, ParserState.Done, 'fits a larger bound');
  const trailers = parse([`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nX-T: ${'t'.repeat(3000)}\r\n\r\n`], { max: 1024 });
  t.equal(trailers.error?.code, 'UND_ERR_HEADERS_OVERFLOW', 'trailers share the bound');
});

t.test('a pause stops execute() where the sink said so; the rest parses after', async (t) => {
  const rec = new Recorder();
  rec.pauseOnBody = true;
  const p = new ResponseParser(rec, 16 * 1024);
  p.reset(false);
  const buf = Buffer.from(CHUNKED_RESPONSE, 'latin1');
  let at = p.execute(buf, 0);
  let calls = 1;
  while (p.state !== ParserState.Done) {
    t.ok(at > 0 && at <= buf.length, 'stopped inside the buffer');
    t.equal(rec.parts.length, calls, 'exactly one body piece per execute() while pausing');
    at = p.execute(buf, at);
    calls++;
    if (calls > 10) break;
  }
  t.equal(Buffer.concat(rec.parts).toString(), 'hello world0123456789');
  t.equal(at, buf.length);
});

t.test('bytes after the end of a response are left for the caller (it treats them as an error)', async (t) => {
  const r = parse([CL_RESPONSE + 'HTTP/1.1 200 OK\r\n']);
  t.equal(r.state, ParserState.Done);
  t.equal(r.leftover, 'HTTP/1.1 200 OK\r\n'.length);
});
