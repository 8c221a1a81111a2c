/**
 * An incremental HTTP/1.1 response parser for the upstream client: status line and headers, then a
 * body framed by content-length, chunked transfer coding (extensions and trailers), or the end of the
 * connection. Bytes may be split anywhere; nothing is buffered without a bound (the header block and the
 * chunk-size/trailer lines are capped; body bytes are handed on as views of the socket's own chunks).
 *
 * Strict where a proxy must be: CRLF line ends only, no obs-fold, no whitespace before a header's colon,
 * no control characters, one content-length value, chunked only as the final coding. 1xx responses are
 * skipped (101 is an error: the router never asks to upgrade).
 */
import { errors } from 'undici';

/** Where the parser sends what it reads. Returning false pauses: execute() stops and returns. */
export interface ResponseSink {
  onHead(status: number, statusText: string, rawHeaders: string[]): boolean;
  onBody(chunk: Buffer): boolean;
}

export const enum ParserState {
  Head,
  BodyLength,
  BodyClose,
  ChunkSize,
  ChunkSizeWs,
  ChunkExt,
  ChunkSizeLf,
  ChunkData,
  ChunkDataCr,
  ChunkDataLf,
  TrailerLineStart,
  TrailerLine,
  TrailerLineLf,
  TrailerEndLf,
  Done,
  Failed,
}

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
const EMPTY: string[] = [];
/** Most hex digits in a chunk size (2^48 bytes: far above anything real, safely an integer). */
const MAX_CHUNK_SIZE_DIGITS = 12;
/** Chunk extensions on one chunk-size line. */
const MAX_CHUNK_EXT_BYTES = 4096;

/** tchar (RFC 9110 5.6.2) as a lookup table. */
const TOKEN = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TOKEN[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TOKEN[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TOKEN[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TOKEN[c] = 1;

/** Hex digit values; -1 for anything else. */
const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[0x41 + c] = 10 + c;
  HEX[0x61 + c] = 10 + c;
}

/** Control characters a header block may not hold (CR and LF are checked as line ends separately; HTAB is allowed). */
const FORBIDDEN_CTL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/;
const BARE_CR_OR_LF = /\r(?!\n)|(?<!\r)\n/;
const DIGITS = /^[0-9]+$/;

/** text[start, end) without leading and trailing spaces and tabs (String.trim would also eat latin1 0xA0). */
function trimOws(text: string, start: number, end: number): string {
  while (start < end && (text.charCodeAt(start) === 0x20 || text.charCodeAt(start) === 0x09)) start++;
  while (end > start && (text.charCodeAt(end - 1) === 0x20 || text.charCodeAt(end - 1) === 0x09)) end--;
  return text.slice(start, end);
}

/** undici's HTTPParserError with an llhttp-style code (HPE_*), as undici reports a malformed response. */
export function protocolError(message: string, code: string): Error {
  const err = new errors.HTTPParserError(`Response does not match the HTTP/1.1 protocol (${message})`);
  (err as { code?: string }).code = `HPE_${code}`;
  return err;
}

export class ResponseParser {
  state: ParserState = ParserState.Head;
  /** After the head: whether the connection may carry another request. */
  keepAlive = true;
  /** Keep-Alive: timeout= of the response in ms (-1 when absent). */
  keepAliveTimeoutMs = -1;
  statusCode = 0;
  /** Trailer fields of a chunked body ([name, value, ...]); null when none. */
  trailers: string[] | null = null;
  /** Set by the owner before a request whose response has no body whatever its headers say (HEAD). */
  noBody = false;
  error: Error | null = null;
  /** Body bytes still expected (content-length) or left in the current chunk. */
  private remaining = 0;
  private chunkDigits = 0;
  private chunkExtBytes = 0;
  /** A header block that arrived in pieces (allocated on first need, at most maxHeaderSize). */
  private headBuf: Buffer | null = null;
  private headLen = 0;
  /** The trailer section in latin1 while it arrives (bounded by maxHeaderSize). */
  private trailerText = '';

  constructor(
    private readonly sink: ResponseSink,
    private readonly maxHeaderSize: number,
  ) {}

  /** Ready for the next response on the same connection. */
  reset(noBody: boolean): void {
    this.state = ParserState.Head;
    this.keepAlive = true;
    this.keepAliveTimeoutMs = -1;
    this.statusCode = 0;
    this.trailers = null;
    this.noBody = noBody;
    this.error = null;
    this.remaining = 0;
    this.headLen = 0;
    this.trailerText = '';
  }

  /** True while some of the response has arrived (a head in pieces counts). */
  get started(): boolean {
    return this.state !== ParserState.Head || this.headLen > 0;
  }

  /**
   * Parse from buf[pos]. Returns where it stopped: buf.length when everything was consumed, earlier when
   * the sink paused or the message ended (state Done; bytes left over are the caller's to judge), or -1 on
   * a protocol error (state Failed, `error` set).
   */
  execute(buf: Buffer, pos: number): number {
    const len = buf.length;
    for (;;) {
      switch (this.state) {
        case ParserState.Head: {
          if (pos >= len) return pos;
          const next = this.readHead(buf, pos);
          if (next < 0) return next;
          if (this.state === ParserState.Head) {
            // A 1xx response was skipped, or the head is still incomplete (next === len).
            if (next >= len) return next;
            pos = next;
            continue;
          }
          pos = next;
          if (this.pausedAfterHead) {
            this.pausedAfterHead = false;
            return pos;
          }
          continue;
        }
        case ParserState.BodyLength: {
          if (this.remaining === 0) {
            this.state = ParserState.Done;
            return pos;
          }
          if (pos >= len) return pos;
          const n = Math.min(this.remaining, len - pos);
          const chunk = pos === 0 && n === len ? buf : buf.subarray(pos, pos + n);
          pos += n;
          this.remaining -= n;
          if (!this.sink.onBody(chunk)) return pos;
          continue;
        }
        case ParserState.BodyClose: {
          if (pos >= len) return pos;
          // Everything up to the end of the connection is body; a pause takes effect after this chunk.
          this.sink.onBody(pos === 0 ? buf : buf.subarray(pos));
          return len;
        }
        case ParserState.ChunkData: {
          if (pos >= len) return pos;
          const n = Math.min(this.remaining, len - pos);
          const chunk = buf.subarray(pos, pos + n);
          pos += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = ParserState.ChunkDataCr;
          if (!this.sink.onBody(chunk)) return pos;
          continue;
        }
        case ParserState.Done:
          return pos;
        case ParserState.Failed:
          return -1;
        default: {
          // Chunk framing and trailers: byte by byte (these lines are a few bytes each).
          if (pos >= len) return pos;
          pos = this.framing(buf, pos, len);
          if (pos < 0) return pos;
          continue;
        }
      }
    }
  }

  /**
   * The connection ended. Returns true when that completes the response (a close-delimited body), false
   * when the response was cut short.
   */
  finish(): boolean {
    if (this.state === ParserState.BodyClose) {
      this.state = ParserState.Done;
      return true;
    }
    return this.state === ParserState.Done;
  }

  private pausedAfterHead = false;

  private bad(message: string, code: string): false {
    this.fail(message, code);
    return false;
  }

  private fail(message: string, code: string): number {
    this.state = ParserState.Failed;
    this.error = protocolError(message, code);
    return -1;
  }

  /** Find the end of the header block (possibly across calls) and parse it. */
  private readHead(buf: Buffer, pos: number): number {
    const max = this.maxHeaderSize;
    let head: string;
    let next: number;
    if (this.headLen === 0) {
      const end = buf.indexOf(CRLFCRLF, pos);
      if (end < 0) {
        const avail = buf.length - pos;
        if (avail > max) return this.overflow();
        this.headBuf ??= Buffer.allocUnsafe(max);
        buf.copy(this.headBuf, 0, pos);
        this.headLen = avail;
        return buf.length;
      }
      if (end + 4 - pos > max) return this.overflow();
      head = buf.toString('latin1', pos, end);
      next = end + 4;
    } else {
      const hb = this.headBuf!;
      const old = this.headLen;
      const take = Math.min(buf.length - pos, max - old);
      buf.copy(hb, old, pos, pos + take);
      this.headLen = old + take;
      const end = hb.subarray(0, this.headLen).indexOf(CRLFCRLF, Math.max(0, old - 3));
      if (end < 0) {
        if (this.headLen >= max) return this.overflow();
        return pos + take;
      }
      head = hb.toString('latin1', 0, end);
      next = pos + (end + 4 - old);
      this.headLen = 0;
    }
    return this.parseHead(head) ? next : -1;
  }

  private overflow(): number {
    this.state = ParserState.Failed;
    this.error = new errors.HeadersOverflowError();
    return -1;
  }

  /** One complete header block (without its final CRLFCRLF). False on a protocol error. */
  private parseHead(head: string): boolean {
    if (FORBIDDEN_CTL.test(head) || BARE_CR_OR_LF.test(head)) return this.bad('invalid character in the response head', 'INVALID_HEADER_TOKEN');
    let eol = head.indexOf('\r\n');
    if (eol < 0) eol = head.length;
    // Status line: HTTP/1.x SP 3DIGIT [SP reason]
    if (eol < 12 || !head.startsWith('HTTP/1.') || head.charCodeAt(8) !== 0x20) return this.bad('invalid status line', 'INVALID_CONSTANT');
    const minor = head.charCodeAt(7);
    if (minor !== 0x30 && minor !== 0x31) return this.bad('unsupported HTTP version', 'INVALID_VERSION');
    const d0 = head.charCodeAt(9) - 0x30;
    const d1 = head.charCodeAt(10) - 0x30;
    const d2 = head.charCodeAt(11) - 0x30;
    if (d0 < 1 || d0 > 9 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return this.bad('invalid status code', 'INVALID_STATUS');
    const status = d0 * 100 + d1 * 10 + d2;
    let statusText = '';
    if (eol > 12) {
      if (head.charCodeAt(12) !== 0x20) return this.bad('invalid status line', 'INVALID_STATUS');
      statusText = head.slice(13, eol);
    }
    const http10 = minor === 0x30;

    const raw: string[] = [];
    let contentLength = -1;
    let chunked = false;
    let transferEncoding = false;
    let connClose = false;
    let connKeepAlive = false;
    let keepAliveTimeout = -1;
    let pos = eol + 2;
    while (pos < head.length) {
      let end = head.indexOf('\r\n', pos);
      if (end < 0) end = head.length;
      const first = head.charCodeAt(pos);
      if (first === 0x20 || first === 0x09) return this.bad('obsolete line folding', 'INVALID_HEADER_TOKEN');
      const colon = head.indexOf(':', pos);
      if (colon < 0 || colon >= end || colon === pos) return this.bad('header line without a name', 'INVALID_HEADER_TOKEN');
      for (let i = pos; i < colon; i++) {
        if (TOKEN[head.charCodeAt(i)] !== 1) return this.bad('invalid character in a header name', 'INVALID_HEADER_TOKEN');
      }
      const name = head.slice(pos, colon);
      const value = trimOws(head, colon + 1, end);
      raw.push(name, value);
      const nl = colon - pos;
      if (nl === 14 && name.toLowerCase() === 'content-length') {
        if (!DIGITS.test(value) || value.length > 15) return this.bad('invalid content-length', 'INVALID_CONTENT_LENGTH');
        const n = Number(value);
        if (contentLength !== -1 && contentLength !== n) return this.bad('conflicting content-length values', 'UNEXPECTED_CONTENT_LENGTH');
        contentLength = n;
      } else if (nl === 17 && name.toLowerCase() === 'transfer-encoding') {
        // The codings of every transfer-encoding line in order; chunked is allowed only as the last.
        for (const part of value.split(',')) {
          const coding = part.trim().toLowerCase();
          if (coding === '') continue;
          if (chunked) return this.bad('chunked is not the final transfer coding', 'INVALID_TRANSFER_ENCODING');
          transferEncoding = true;
          if (coding === 'chunked') chunked = true;
        }
      } else if (nl === 10) {
        const lower = name.toLowerCase();
        if (lower === 'connection') {
          for (const part of value.split(',')) {
            const t = part.trim().toLowerCase();
            if (t === 'close') connClose = true;
            else if (t === 'keep-alive') connKeepAlive = true;
          }
        } else if (lower === 'keep-alive') {
          const m = /(?:^|[,;\s])timeout\s*=\s*(\d+)/i.exec(value);
          if (m !== null) keepAliveTimeout = Number(m[1]) * 1000;
        }
      }
      pos = end + 2;
    }

    if (status < 200) {
      if (status === 101) return this.bad('unexpected protocol upgrade', 'INVALID_CONSTANT');
      // 100-continue and other informational answers: wait for the final one.
      return true;
    }
    this.statusCode = status;
    this.keepAlive = !connClose && (!http10 || connKeepAlive);
    this.keepAliveTimeoutMs = keepAliveTimeout;
    if (this.noBody || status === 204 || status === 304) {
      this.state = ParserState.BodyLength;
      this.remaining = 0;
    } else if (chunked) {
      // A content-length beside chunked is ignored (RFC 9112 6.3), but the connection is not trusted after it.
      if (contentLength !== -1) this.keepAlive = false;
      this.state = ParserState.ChunkSize;
      this.remaining = 0;
      this.chunkDigits = 0;
    } else if (transferEncoding) {
      // A coding we do not decode, not chunked: the body runs to the end of the connection.
      this.state = ParserState.BodyClose;
      this.keepAlive = false;
    } else if (contentLength >= 0) {
      this.state = ParserState.BodyLength;
      this.remaining = contentLength;
    } else {
      this.state = ParserState.BodyClose;
      this.keepAlive = false;
    }
    this.pausedAfterHead = !this.sink.onHead(status, statusText, raw.length === 0 ? EMPTY : raw);
    return true;
  }

  /** Chunk-size lines, the CRLF after chunk data, and the trailer section. */
  private framing(buf: Buffer, pos: number, len: number): number {
    while (pos < len) {
      const c = buf[pos]!;
      switch (this.state) {
        case ParserState.ChunkSize: {
          const d = HEX[c]!;
          if (d >= 0) {
            if (++this.chunkDigits > MAX_CHUNK_SIZE_DIGITS) return this.fail('chunk size too large', 'INVALID_CHUNK_SIZE');
            this.remaining = this.remaining * 16 + d;
            pos++;
            break;
          }
          if (this.chunkDigits === 0) return this.fail('invalid chunk size', 'INVALID_CHUNK_SIZE');
          if (c === 0x0d) this.state = ParserState.ChunkSizeLf;
          else if (c === 0x3b) {
            this.state = ParserState.ChunkExt;
            this.chunkExtBytes = 0;
          } else if (c === 0x20 || c === 0x09) this.state = ParserState.ChunkSizeWs;
          else return this.fail('invalid chunk size', 'INVALID_CHUNK_SIZE');
          pos++;
          break;
        }
        case ParserState.ChunkSizeWs: {
          if (c === 0x0d) this.state = ParserState.ChunkSizeLf;
          else if (c === 0x3b) {
            this.state = ParserState.ChunkExt;
            this.chunkExtBytes = 0;
          } else if (c !== 0x20 && c !== 0x09) return this.fail('invalid chunk size', 'INVALID_CHUNK_SIZE');
          pos++;
          break;
        }
        case ParserState.ChunkExt: {
          if (c === 0x0d) this.state = ParserState.ChunkSizeLf;
          else if ((c < 0x20 && c !== 0x09) || c === 0x7f) return this.fail('invalid character in a chunk extension', 'STRICT');
          else if (++this.chunkExtBytes > MAX_CHUNK_EXT_BYTES) return this.fail('chunk extensions too long', 'CHUNK_EXTENSIONS_OVERFLOW');
          pos++;
          break;
        }
        case ParserState.ChunkSizeLf: {
          if (c !== 0x0a) return this.fail('expected LF after the chunk size', 'STRICT');
          pos++;
          this.chunkDigits = 0;
          if (this.remaining === 0) {
            this.state = ParserState.TrailerLineStart;
            this.trailerText = '';
          } else {
            this.state = ParserState.ChunkData;
            return pos;
          }
          break;
        }
        case ParserState.ChunkDataCr: {
          if (c !== 0x0d) return this.fail('expected CRLF after chunk data', 'STRICT');
          this.state = ParserState.ChunkDataLf;
          pos++;
          break;
        }
        case ParserState.ChunkDataLf: {
          if (c !== 0x0a) return this.fail('expected CRLF after chunk data', 'STRICT');
          this.state = ParserState.ChunkSize;
          this.remaining = 0;
          pos++;
          break;
        }
        case ParserState.TrailerLineStart: {
          if (c === 0x0d) {
            this.state = ParserState.TrailerEndLf;
            pos++;
            break;
          }
          this.state = ParserState.TrailerLine;
          break;
        }
        case ParserState.TrailerLine: {
          let end = buf.indexOf(0x0d, pos);
          if (end < 0 || end > len) end = len;
          if (this.trailerText.length + (end - pos) > this.maxHeaderSize) return this.overflow();
          this.trailerText += buf.toString('latin1', pos, end);
          pos = end;
          if (end < len) {
            this.state = ParserState.TrailerLineLf;
            pos++;
          }
          break;
        }
        case ParserState.TrailerLineLf: {
          if (c !== 0x0a) return this.fail('expected LF in trailers', 'STRICT');
          this.trailerText += '\r\n';
          this.state = ParserState.TrailerLineStart;
          pos++;
          break;
        }
        case ParserState.TrailerEndLf: {
          if (c !== 0x0a) return this.fail('expected LF after trailers', 'STRICT');
          pos++;
          if (this.trailerText !== '' && !this.parseTrailers(this.trailerText)) return -1;
          this.trailerText = '';
          this.state = ParserState.Done;
          return pos;
        }
        default:
          return pos;
      }
    }
    return pos;
  }

  private parseTrailers(text: string): boolean {
    if (FORBIDDEN_CTL.test(text) || BARE_CR_OR_LF.test(text)) return this.bad('invalid character in trailers', 'INVALID_HEADER_TOKEN');
    const raw: string[] = [];
    let pos = 0;
    while (pos < text.length) {
      const end = text.indexOf('\r\n', pos);
      const first = text.charCodeAt(pos);
      if (first === 0x20 || first === 0x09) return this.bad('obsolete line folding in trailers', 'INVALID_HEADER_TOKEN');
      const colon = text.indexOf(':', pos);
      if (colon <= pos || colon >= end) return this.bad('trailer line without a name', 'INVALID_HEADER_TOKEN');
      for (let i = pos; i < colon; i++) {
        if (TOKEN[text.charCodeAt(i)] !== 1) return this.bad('invalid character in a trailer name', 'INVALID_HEADER_TOKEN');
      }
      raw.push(text.slice(pos, colon), trimOws(text, colon + 1, end));
      pos = end + 2;
    }
    this.trailers = raw;
    return true;
  }
}
