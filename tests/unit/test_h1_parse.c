/* Unit tests: the HTTP/1.1 parser as the codec drives it, from a table of
 * requests and responses, valid and invalid. Each case states the status
 * the message gets (0: accepted; AGAIN: incomplete), the exact bytes the
 * reader consumes (the `ok` part: for an accepted message its head and
 * body, leaving `rest`, the next pipelined bytes, in the buffer; for a
 * refused one the bytes read before the offending one, nothing at all
 * when the head is refused) and the decoded body. Every case is fed whole,
 * split in two at every byte boundary, and one byte at a time, and must
 * give the same result each way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <event2/buffer.h>

#include "proxy/h1_codec.h"

#define AGAIN (-1)
#define F_EOF 1     /* the peer closes after the last byte */
#define F_HEADREQ 2 /* a response to a HEAD request */
#define F_LIMIT 4   /* request body limit of 64 bytes */

typedef struct tcase {
    const char *name;
    const char *ok;
    size_t ok_len;
    const char *rest;
    size_t rest_len;
    int status;
    const char *body;
    size_t body_len;
    int flags;
} tcase_t;

#define S(x) x, sizeof(x) - 1
/* accepted: msg is consumed whole, rest stays, body is what it decodes to */
#define OKF(name, msg, rest, body, fl) { name, S(msg), S(rest), 0, S(body), fl }
#define OK(name, msg, rest, body) OKF(name, msg, rest, body, 0)
/* refused in the head: nothing is consumed */
#define BAD(name, raw, st) { name, S(""), S(raw), st, S(""), 0 }
#define BADF(name, raw, st, fl) { name, S(""), S(raw), st, S(""), fl }
/* refused in the body: `ok` (head and good body bytes) is consumed, then the error */
#define BADB(name, ok, bad, st, body) { name, S(ok), S(bad), st, S(body), 0 }
#define BADBF(name, ok, bad, st, body, fl) { name, S(ok), S(bad), st, S(body), fl }
/* incomplete: ok is consumed and more is needed */
#define MORE(name, ok, rest, body) { name, S(ok), S(rest), AGAIN, S(body), 0 }

#define H "Host: h\r\n"
#define POST_CHUNKED "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n"
#define RESP_CHUNKED "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

static const tcase_t requests[] = {
    /* ---- valid heads ---- */
    OK("get", "GET / HTTP/1.1\r\n" H "\r\n", "", ""),
    OK("get query", "GET /a/b?x=1&y=%20 HTTP/1.1\r\n" H "\r\n", "", ""),
    OK("http/1.0 without host", "GET / HTTP/1.0\r\n\r\n", "", ""),
    OK("http/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "", ""),
    OK("leading crlf", "\r\nGET / HTTP/1.1\r\n" H "\r\n", "", ""),
    OK("two leading crlf", "\r\n\r\nGET / HTTP/1.1\r\n" H "\r\n", "", ""),
    OK("pipelined", "GET /1 HTTP/1.1\r\n" H "\r\n", "GET /2 HTTP/1.1\r\n" H "\r\n", ""),
    OK("pipelined garbage stays", "GET /1 HTTP/1.1\r\n" H "\r\n", "\x01\x02garbage", ""),
    OK("value inner spaces", "GET / HTTP/1.1\r\n" H "X-A: a b  c\r\n\r\n", "", ""),
    OK("value trailing ws", "GET / HTTP/1.1\r\n" H "X-A: v \t \r\n\r\n", "", ""),
    OK("value leading ws", "GET / HTTP/1.1\r\n" H "X-A: \t  v\r\n\r\n", "", ""),
    OK("value tab inside", "GET / HTTP/1.1\r\n" H "X-A: a\tb\r\n\r\n", "", ""),
    OK("value obs-text", "GET / HTTP/1.1\r\n" H "X-A: caf\xc3\xa9 \x80\xff\r\n\r\n", "", ""),
    OK("empty value", "GET / HTTP/1.1\r\n" H "X-A:\r\n\r\n", "", ""),
    OK("empty value ws", "GET / HTTP/1.1\r\n" H "X-A:   \r\n\r\n", "", ""),
    OK("no space after colon", "GET / HTTP/1.1\r\nHost:h\r\nX-A:b\r\n\r\n", "", ""),
    OK("all tchars in name", "GET / HTTP/1.1\r\n" H "!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n", "", ""),
    OK("value all vchars", "GET / HTTP/1.1\r\n" H "X-A: !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\r\n\r\n", "", ""),
    OK("colon in value", "GET / HTTP/1.1\r\n" H "X-A: a:b:c\r\n\r\n", "", ""),
    OK("many headers",
       "GET / HTTP/1.1\r\n" H "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nI: 8\r\nJ: 9\r\nK: 10\r\n"
       "L: 11\r\nM: 12\r\nN: 13\r\nO: 14\r\nP: 15\r\nQ: 16\r\nR: 17\r\nS: 18\r\nT: 19\r\nU: 20\r\n"
       "V: 21\r\nW: 22\r\nX: 23\r\nY: 24\r\nZ: 25\r\nAA: 26\r\nAB: 27\r\nAC: 28\r\nAD: 29\r\nAE: 30\r\n"
       "AF: 31\r\nAG: 32\r\nAH: 33\r\nAI: 34\r\n\r\n",
       "", ""),
    OK("absolute form", "GET http://example.org/p?q HTTP/1.1\r\n" H "\r\n", "", ""),
    OK("absolute form https port", "GET https://example.org:8443/p HTTP/1.1\r\n" H "\r\n", "", ""),
    OK("absolute form no path", "GET http://example.org HTTP/1.1\r\n" H "\r\n", "", ""),
    OK("absolute form query no path", "GET http://example.org?q=1 HTTP/1.1\r\n" H "\r\n", "", ""),
    OK("absolute form upper scheme", "GET HTTP://example.org/ HTTP/1.1\r\n" H "\r\n", "", ""),
    OK("options asterisk", "OPTIONS * HTTP/1.1\r\n" H "\r\n", "", ""),
    OK("extension method", "PURGE /x HTTP/1.1\r\n" H "\r\n", "", ""),
    OK("method with tchars", "M-SEARCH /x HTTP/1.1\r\n" H "\r\n", "", ""),
    OK("lowercase method token", "get / HTTP/1.1\r\n" H "\r\n", "", ""),
    OK("target special chars", "GET /a%20b;p=1/[x]/@:!$&'()*+,=~ HTTP/1.1\r\n" H "\r\n", "", ""),
    OK("host with port", "GET / HTTP/1.1\r\nHost: h:8080\r\n\r\n", "", ""),
    OK("host upper name", "GET / HTTP/1.1\r\nHOST: h\r\n\r\n", "", ""),
    OK("expect continue", "POST / HTTP/1.1\r\n" H "Expect: 100-continue\r\nContent-Length: 2\r\n\r\nab", "", "ab"),
    OK("expect continue case", "POST / HTTP/1.1\r\n" H "Expect: 100-CONTINUE\r\nContent-Length: 0\r\n\r\n", "", ""),
    OK("upgrade websocket", "GET /ws HTTP/1.1\r\n" H "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n", "", ""),
    OK("connection close", "GET / HTTP/1.1\r\n" H "Connection: close\r\n\r\n", "", ""),
    OK("connection list", "GET / HTTP/1.1\r\n" H "Connection: keep-alive, x-foo , close\r\n\r\n", "", ""),
    /* ---- valid Content-Length bodies ---- */
    OK("cl body", "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\n\r\nhello", "", "hello"),
    OK("cl body pipelined", "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\n\r\nhello", "GET / HTTP/1.1\r\n", "hello"),
    OK("cl zero", "POST / HTTP/1.1\r\n" H "Content-Length: 0\r\n\r\n", "GET", ""),
    OK("cl leading zeros", "POST / HTTP/1.1\r\n" H "Content-Length: 005\r\n\r\nhello", "", "hello"),
    OK("cl identical list", "POST / HTTP/1.1\r\n" H "Content-Length: 5, 5\r\n\r\nhello", "", "hello"),
    OK("cl identical list no ws", "POST / HTTP/1.1\r\n" H "Content-Length: 5,5,5\r\n\r\nhello", "", "hello"),
    OK("cl identical repeated", "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "",
       "hello"),
    OK("cl trailing ws", "POST / HTTP/1.1\r\n" H "Content-Length: 5 \r\n\r\nhello", "", "hello"),
    OK("cl upper name", "POST / HTTP/1.1\r\n" H "CONTENT-LENGTH: 5\r\n\r\nhello", "", "hello"),
    OK("cl body with crlf", "POST / HTTP/1.1\r\n" H "Content-Length: 4\r\n\r\n\r\n\r\n", "", "\r\n\r\n"),
    OK("cl body binary", "POST / HTTP/1.1\r\n" H "Content-Length: 4\r\n\r\n\x00\x01\xff\n", "", "\x00\x01\xff\n"),
    OKF("cl at limit", "POST / HTTP/1.1\r\n" H "Content-Length: 64\r\n\r\n"
        "0123456789012345678901234567890123456789012345678901234567890123", "",
        "0123456789012345678901234567890123456789012345678901234567890123", F_LIMIT),
    /* ---- valid chunked bodies ---- */
    OK("chunked", POST_CHUNKED "5\r\nhello\r\n0\r\n\r\n", "", "hello"),
    OK("chunked pipelined", POST_CHUNKED "5\r\nhello\r\n0\r\n\r\n", "GET / HTTP/1.1\r\n", "hello"),
    OK("chunked two", POST_CHUNKED "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "", "hello world"),
    OK("chunked empty", POST_CHUNKED "0\r\n\r\n", "", ""),
    OK("chunked upper hex", POST_CHUNKED "A\r\n0123456789\r\n0\r\n\r\n", "", "0123456789"),
    OK("chunked lower hex", POST_CHUNKED "a\r\n0123456789\r\n0\r\n\r\n", "", "0123456789"),
    OK("chunked size leading zeros", POST_CHUNKED "0005\r\nhello\r\n0\r\n\r\n", "", "hello"),
    OK("chunked last 000", POST_CHUNKED "5\r\nhello\r\n000\r\n\r\n", "", "hello"),
    OK("chunk ext name", POST_CHUNKED "5;a\r\nhello\r\n0\r\n\r\n", "", "hello"),
    OK("chunk ext name=token", POST_CHUNKED "5;a=b\r\nhello\r\n0\r\n\r\n", "", "hello"),
    OK("chunk ext quoted", POST_CHUNKED "5;a=\"x y\"\r\nhello\r\n0\r\n\r\n", "", "hello"),
    OK("chunk ext quoted escape", POST_CHUNKED "5;a=\"x\\\"y\\\\\"\r\nhello\r\n0\r\n\r\n", "", "hello"),
    OK("chunk ext quoted empty", POST_CHUNKED "5;a=\"\"\r\nhello\r\n0\r\n\r\n", "", "hello"),
    OK("chunk ext bws", POST_CHUNKED "5 ; a = b\r\nhello\r\n0\r\n\r\n", "", "hello"),
    OK("chunk ext bws tab", POST_CHUNKED "5\t;\ta\t=\tb\r\nhello\r\n0\r\n\r\n", "", "hello"),
    OK("chunk ext several", POST_CHUNKED "5;a;b=c;d=\"e\"\r\nhello\r\n0\r\n\r\n", "", "hello"),
    OK("chunk ext quoted then more", POST_CHUNKED "5;a=\"e\" ;b\r\nhello\r\n0\r\n\r\n", "", "hello"),
    OK("last chunk ext", POST_CHUNKED "5\r\nhello\r\n0;x=1\r\n\r\n", "", "hello"),
    OK("chunked trailer", POST_CHUNKED "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", "", "hello"),
    OK("chunked trailers", POST_CHUNKED "5\r\nhello\r\n0\r\nX-T: 1\r\nX-U: two words\r\n\r\n", "GET", "hello"),
    OK("chunked trailer framing dropped", POST_CHUNKED "0\r\nContent-Length: 5\r\n\r\n", "", ""),
    OK("chunked data crlf inside", POST_CHUNKED "4\r\n\r\n\r\n\r\n0\r\n\r\n", "", "\r\n\r\n"),
    OK("chunked data looks like chunk", POST_CHUNKED "6\r\n0\r\n\r\nX\r\n0\r\n\r\n", "", "0\r\n\r\nX"),
    OK("te upper", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n", "", ""),
    OK("te ows", "POST / HTTP/1.1\r\n" H "Transfer-Encoding:  chunked \r\n\r\n0\r\n\r\n", "", ""),
    OKF("chunked at limit", POST_CHUNKED "20\r\n01234567890123456789012345678901\r\n"
        "20\r\n01234567890123456789012345678901\r\n0\r\n\r\n", "",
        "0123456789012345678901234567890101234567890123456789012345678901", F_LIMIT),
    /* ---- incomplete ---- */
    MORE("head incomplete", "", "GET / HTTP/1.1\r\nHost: h\r\n", ""),
    MORE("head incomplete cr", "", "GET / HTTP/1.1\r\nHost: h\r\n\r", ""),
    MORE("method only", "", "GET", ""),
    MORE("empty lines only", "", "\r\n\r\n", ""),
    MORE("cl body incomplete", "POST / HTTP/1.1\r\n" H "Content-Length: 10\r\n\r\nhello", "", "hello"),
    MORE("chunk incomplete", POST_CHUNKED "a\r\nhello", "", "hello"),
    MORE("chunk size incomplete", POST_CHUNKED "5\r\nhello\r\n1", "", "hello"),
    MORE("trailers incomplete", POST_CHUNKED "5\r\nhello\r\n0\r\n", "X-T: 1\r\n", "hello"),
    MORE("huge chunk incomplete", POST_CHUNKED "ffffffffffff\r\nabc", "", "abc"),

    /* ---- line endings ---- */
    BAD("bare lf request line", "GET / HTTP/1.1\n" H "\r\n", 400),
    BAD("bare lf header", "GET / HTTP/1.1\r\nHost: h\n\r\n", 400),
    BAD("bare lf end", "GET / HTTP/1.1\r\n" H "\n", 400),
    BAD("all bare lf", "GET / HTTP/1.1\nHost: h\n\n", 400),
    BAD("bare cr request line", "GET / HTTP/1.1\r" H "\r\n", 400),
    BAD("bare cr header", "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400),
    BAD("bare cr end", "GET / HTTP/1.1\r\n" H "\rX", 400),
    BAD("cr cr lf", "GET / HTTP/1.1\r\r\n" H "\r\n", 400),
    BAD("lf cr", "GET / HTTP/1.1\n\r" H "\r\n", 400),
    BAD("bare cr in value", "GET / HTTP/1.1\r\n" H "X-A: a\rb\r\n\r\n", 400),
    BAD("bare lf in value", "GET / HTTP/1.1\r\n" H "X-A: a\nb\r\n\r\n", 400),
    BAD("bare lf leading", "\nGET / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("bare cr leading", "\rGET / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("bare lf in name", "GET / HTTP/1.1\r\n" H "X\n: a\r\n\r\n", 400),
    /* ---- request line ---- */
    BAD("leading space", " GET / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("leading tab", "\tGET / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("method paren", "G(T / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("method at", "G@T / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("method slash", "GE/T / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("method nul", "GE\0T / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("method obs-text", "G\xc3\x89T / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("method tab", "GET\t/ HTTP/1.1\r\n" H "\r\n", 400),
    BAD("double space", "GET  / HTTP/1.1\r\n" H "\r\n", 400),
    BAD("empty target", "GET  HTTP/1.1\r\n" H "\r\n", 400),
    BAD("target tab", "GET /a\tb HTTP/1.1\r\n" H "\r\n", 400),
    BAD("target space", "GET /a b HTTP/1.1\r\n" H "\r\n", 400),
    BAD("target form feed", "GET /a\fb HTTP/1.1\r\n" H "\r\n", 400),
    BAD("target vt", "GET /a\vb HTTP/1.1\r\n" H "\r\n", 400),
    BAD("target del", "GET /a\x7f HTTP/1.1\r\n" H "\r\n", 400),
    BAD("target nul", "GET /a\0b HTTP/1.1\r\n" H "\r\n", 400),
    BAD("target obs-text", "GET /caf\xc3\xa9 HTTP/1.1\r\n" H "\r\n", 400),
    BAD("target 0xff", "GET /\xff HTTP/1.1\r\n" H "\r\n", 400),
    BAD("target esc", "GET /\x1b[0m HTTP/1.1\r\n" H "\r\n", 400),
    BAD("http/0.9", "GET /\r\n\r\n", 400),
    BAD("no version", "GET / \r\n" H "\r\n", 400),
    BAD("version trailing space", "GET / HTTP/1.1 \r\n" H "\r\n", 400),
    BAD("version lower", "GET / http/1.1\r\n" H "\r\n", 400),
    BAD("version https", "GET / HTTPS/1.1\r\n" H "\r\n", 400),
    BAD("version 1.10", "GET / HTTP/1.10\r\n" H "\r\n", 400),
    BAD("version 11", "GET / HTTP/11\r\n" H "\r\n", 400),
    BAD("version 1.", "GET / HTTP/1.\r\n" H "\r\n", 400),
    BAD("version letters", "GET / HTTP/a.b\r\n" H "\r\n", 400),
    BAD("version 1.2", "GET / HTTP/1.2\r\n" H "\r\n", 505),
    BAD("version 2.0", "GET / HTTP/2.0\r\n" H "\r\n", 505),
    BAD("version 0.9", "GET / HTTP/0.9\r\n" H "\r\n", 505),
    BAD("version 9.9", "GET / HTTP/9.9\r\n" H "\r\n", 505),
    BAD("relative target", "GET nothing HTTP/1.1\r\n" H "\r\n", 400),
    BAD("asterisk not options", "GET * HTTP/1.1\r\n" H "\r\n", 400),
    BAD("absolute ftp", "GET ftp://h/ HTTP/1.1\r\n" H "\r\n", 400),
    BAD("absolute empty authority", "GET http:///p HTTP/1.1\r\n" H "\r\n", 400),
    BAD("absolute scheme only", "GET http:// HTTP/1.1\r\n" H "\r\n", 400),
    BAD("absolute userinfo", "GET http://user:pw@h/ HTTP/1.1\r\n" H "\r\n", 400),
    BAD("authority form", "GET h:80 HTTP/1.1\r\n" H "\r\n", 400),
    BAD("connect", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 405),
    /* ---- field names and values ---- */
    BAD("obs-fold space", "GET / HTTP/1.1\r\n" H "X-A: a\r\n b\r\n\r\n", 400),
    BAD("obs-fold tab", "GET / HTTP/1.1\r\n" H "X-A: a\r\n\tb\r\n\r\n", 400),
    BAD("obs-fold first field", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400),
    BAD("space before colon", "GET / HTTP/1.1\r\n" H "X-A : a\r\n\r\n", 400),
    BAD("tab before colon", "GET / HTTP/1.1\r\n" H "X-A\t: a\r\n\r\n", 400),
    BAD("space in name", "GET / HTTP/1.1\r\n" H "X A: a\r\n\r\n", 400),
    BAD("empty name", "GET / HTTP/1.1\r\n" H ": a\r\n\r\n", 400),
    BAD("no colon", "GET / HTTP/1.1\r\n" H "X-A\r\n\r\n", 400),
    BAD("name at", "GET / HTTP/1.1\r\n" H "Bad@Name: a\r\n\r\n", 400),
    BAD("name paren", "GET / HTTP/1.1\r\n" H "X(A): a\r\n\r\n", 400),
    BAD("name quote", "GET / HTTP/1.1\r\n" H "X\"A: a\r\n\r\n", 400),
    BAD("name slash", "GET / HTTP/1.1\r\n" H "X/A: a\r\n\r\n", 400),
    BAD("name bracket", "GET / HTTP/1.1\r\n" H "X[A]: a\r\n\r\n", 400),
    BAD("name brace", "GET / HTTP/1.1\r\n" H "X{A}: a\r\n\r\n", 400),
    BAD("name nul", "GET / HTTP/1.1\r\n" H "X\0A: a\r\n\r\n", 400),
    BAD("name obs-text", "GET / HTTP/1.1\r\n" H "X\xe9: a\r\n\r\n", 400),
    BAD("name del", "GET / HTTP/1.1\r\n" H "X\x7f: a\r\n\r\n", 400),
    BAD("value nul", "GET / HTTP/1.1\r\n" H "X-A: a\0b\r\n\r\n", 400),
    BAD("value soh", "GET / HTTP/1.1\r\n" H "X-A: a\x01" "b\r\n\r\n", 400),
    BAD("value bel", "GET / HTTP/1.1\r\n" H "X-A: a\x07" "b\r\n\r\n", 400),
    BAD("value vt", "GET / HTTP/1.1\r\n" H "X-A: a\vb\r\n\r\n", 400),
    BAD("value ff", "GET / HTTP/1.1\r\n" H "X-A: a\fb\r\n\r\n", 400),
    BAD("value esc", "GET / HTTP/1.1\r\n" H "X-A: \x1b[31m\r\n\r\n", 400),
    BAD("value del", "GET / HTTP/1.1\r\n" H "X-A: a\x7f\r\n\r\n", 400),
    BAD("value us", "GET / HTTP/1.1\r\n" H "X-A: a\x1f\r\n\r\n", 400),
    /* ---- Host ---- */
    BAD("no host", "GET / HTTP/1.1\r\n\r\n", 400),
    BAD("two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    BAD("two identical hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    BAD("expect other", "GET / HTTP/1.1\r\n" H "Expect: magic\r\n\r\n", 417),
    /* ---- Content-Length ---- */
    BAD("cl negative", "POST / HTTP/1.1\r\n" H "Content-Length: -4\r\n\r\nabcd", 400),
    BAD("cl plus", "POST / HTTP/1.1\r\n" H "Content-Length: +4\r\n\r\nabcd", 400),
    BAD("cl suffix", "POST / HTTP/1.1\r\n" H "Content-Length: 4x\r\n\r\nabcd", 400),
    BAD("cl empty", "POST / HTTP/1.1\r\n" H "Content-Length:\r\n\r\n", 400),
    BAD("cl spaces only", "POST / HTTP/1.1\r\n" H "Content-Length:   \r\n\r\n", 400),
    BAD("cl hex", "POST / HTTP/1.1\r\n" H "Content-Length: 0x4\r\n\r\nabcd", 400),
    BAD("cl inner space", "POST / HTTP/1.1\r\n" H "Content-Length: 1 2\r\n\r\nabcd", 400),
    BAD("cl exponent", "POST / HTTP/1.1\r\n" H "Content-Length: 1e3\r\n\r\n", 400),
    BAD("cl decimal", "POST / HTTP/1.1\r\n" H "Content-Length: 4.0\r\n\r\nabcd", 400),
    BAD("cl differing list", "POST / HTTP/1.1\r\n" H "Content-Length: 4, 5\r\n\r\nabcde", 400),
    BAD("cl list trailing comma", "POST / HTTP/1.1\r\n" H "Content-Length: 4,\r\n\r\nabcd", 400),
    BAD("cl list leading comma", "POST / HTTP/1.1\r\n" H "Content-Length: ,4\r\n\r\nabcd", 400),
    BAD("cl differing repeated", "POST / HTTP/1.1\r\n" H "Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", 400),
    BAD("cl overflow", "POST / HTTP/1.1\r\n" H "Content-Length: 18446744073709551616\r\n\r\n", 400),
    BAD("cl 20 digits", "POST / HTTP/1.1\r\n" H "Content-Length: 00000000000000000001\r\n\r\n", 400),
    BAD("cl and te", "POST / HTTP/1.1\r\n" H "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    BAD("te and cl", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400),
    BADF("cl over limit", "POST / HTTP/1.1\r\n" H "Content-Length: 65\r\n\r\n", 413, F_LIMIT),
    /* ---- Transfer-Encoding ---- */
    BAD("te gzip", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\n", 400),
    BAD("te identity", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: identity\r\n\r\n", 400),
    BAD("te gzip chunked", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    BAD("te chunked gzip", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    BAD("te chunked twice", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
    BAD("te chunked twice fields", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    BAD("te split fields", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
    BAD("te chunked param", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked;q=1\r\n\r\n", 400),
    BAD("te empty element", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: , chunked\r\n\r\n", 400),
    BAD("te trailing comma", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked,\r\n\r\n", 400),
    BAD("te empty", "POST / HTTP/1.1\r\n" H "Transfer-Encoding:\r\n\r\n", 400),
    BAD("te xchunked", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: xchunked\r\n\r\n", 400),
    BAD("te chunkedx", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunkedx\r\n\r\n", 400),
    BAD("te quoted", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: \"chunked\"\r\n\r\n", 400),
    BAD("te vertical tab", "POST / HTTP/1.1\r\n" H "Transfer-Encoding: \vchunked\r\n\r\n", 400),
    BAD("te http/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    /* ---- chunk lines ---- */
    BADB("chunk data not crlf", POST_CHUNKED "5\r\nhello", "XY0\r\n\r\n", 400, "hello"),
    BADB("chunk data bare lf", POST_CHUNKED "5\r\nhello", "\n0\r\n\r\n", 400, "hello"),
    BADB("chunk data bare cr", POST_CHUNKED "5\r\nhello\r", "0\r\n\r\n", 400, "hello"),
    BADB("chunk data too long", POST_CHUNKED "3\r\nhel", "lo\r\n0\r\n\r\n", 400, "hel"),
    BADB("chunk size bare lf", POST_CHUNKED "5", "\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk size bare cr", POST_CHUNKED "5\r", "hello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk size trailing space", POST_CHUNKED "5 ", "\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk size leading space", POST_CHUNKED "", " 5\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk size empty", POST_CHUNKED "", "\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk size letters", POST_CHUNKED "", "zz\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk size 0x", POST_CHUNKED "0", "x5\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk size minus", POST_CHUNKED "", "-5\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk size plus", POST_CHUNKED "", "+5\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk size 17 digits", POST_CHUNKED "0000000000000000", "5\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk size nul", POST_CHUNKED "5", "\0\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk ext empty name", POST_CHUNKED "5;", "\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk ext empty value", POST_CHUNKED "5;a=", "\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk ext space in value", POST_CHUNKED "5;a=b ", "c\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk ext ws before crlf", POST_CHUNKED "5;a ", "\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk ext unterminated quote", POST_CHUNKED "5;a=\"x", "\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk ext quoted ctl", POST_CHUNKED "5;a=\"x", "\x01\"\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk ext bare lf", POST_CHUNKED "5;a", "\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk ext bare cr", POST_CHUNKED "5;a\r", "hello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk ext bad name", POST_CHUNKED "5;", "@\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk ext after quote", POST_CHUNKED "5;a=\"x\"", "y\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("chunk ext nul", POST_CHUNKED "5;a", "\0\r\nhello\r\n0\r\n\r\n", 400, ""),
    BADB("last chunk bare lf", POST_CHUNKED "5\r\nhello\r\n0", "\n\r\n", 400, "hello"),
    BADBF("chunk over limit", POST_CHUNKED "20\r\n01234567890123456789012345678901\r\n21\r\n",
          "012345678901234567890123456789012\r\n0\r\n\r\n", 413, "01234567890123456789012345678901", F_LIMIT),
    /* ---- trailers: the head's rules ---- */
    BADB("trailer bare lf", POST_CHUNKED "5\r\nhello\r\n0\r\n", "X-T: 1\n\r\n", 400, "hello"),
    BADB("trailer end bare lf", POST_CHUNKED "5\r\nhello\r\n0\r\n", "\n", 400, "hello"),
    BADB("trailer obs-fold", POST_CHUNKED "5\r\nhello\r\n0\r\n", "X-T: 1\r\n 2\r\n\r\n", 400, "hello"),
    BADB("trailer space in name", POST_CHUNKED "5\r\nhello\r\n0\r\n", "X T: 1\r\n\r\n", 400, "hello"),
    BADB("trailer space before colon", POST_CHUNKED "5\r\nhello\r\n0\r\n", "X-T : 1\r\n\r\n", 400, "hello"),
    BADB("trailer nul", POST_CHUNKED "5\r\nhello\r\n0\r\n", "X-T: a\0\r\n\r\n", 400, "hello"),
    BADB("trailer ctl", POST_CHUNKED "5\r\nhello\r\n0\r\n", "X-T: a\x01\r\n\r\n", 400, "hello"),
    BADB("trailer bare cr", POST_CHUNKED "5\r\nhello\r\n0\r\n", "X-T: a\rb\r\n\r\n", 400, "hello"),
    BADB("trailer no colon", POST_CHUNKED "5\r\nhello\r\n0\r\n", "X-T\r\n\r\n", 400, "hello"),
};

static const tcase_t responses[] = {
    OK("200 cl", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", "", "abc"),
    OK("200 cl pipelined", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", "HTTP/1.1 200 OK\r\n", "abc"),
    OK("200 cl zero", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "", ""),
    OK("200 cl list", "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc", "", "abc"),
    OK("http/1.0 cl", "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc", "", "abc"),
    OK("no reason", "HTTP/1.1 200\r\nContent-Length: 3\r\n\r\nabc", "", "abc"),
    OK("empty reason", "HTTP/1.1 200 \r\nContent-Length: 3\r\n\r\nabc", "", "abc"),
    OK("reason words", "HTTP/1.1 404 Not Found Here\r\nContent-Length: 0\r\n\r\n", "", ""),
    OK("reason obs-text", "HTTP/1.1 200 \xc3\x89tat \t ok\r\nContent-Length: 0\r\n\r\n", "", ""),
    OK("status 999", "HTTP/1.1 999 X\r\nContent-Length: 0\r\n\r\n", "", ""),
    OK("status 599", "HTTP/1.1 599 X\r\nContent-Length: 1\r\n\r\nz", "", "z"),
    OK("chunked", RESP_CHUNKED "3\r\nabc\r\n0\r\n\r\n", "", "abc"),
    OK("chunked pipelined", RESP_CHUNKED "3\r\nabc\r\n0\r\n\r\n", "HTTP/1.1", "abc"),
    OK("chunked trailers", RESP_CHUNKED "3\r\nabc\r\n0\r\nGrpc-Status: 0\r\nX-Sum: 1\r\n\r\n", "", "abc"),
    OK("chunked ext", RESP_CHUNKED "3;a=\"b\"\r\nabc\r\n0\r\n\r\n", "", "abc"),
    OK("chunked many", RESP_CHUNKED "1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n", "", "abc"),
    OKF("close delimited", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close", "", "until close", F_EOF),
    OKF("close delimited empty", "HTTP/1.1 200 OK\r\n\r\n", "", "", F_EOF),
    OKF("http/1.0 close delimited", "HTTP/1.0 200 OK\r\n\r\nbody", "", "body", F_EOF),
    OK("204", "HTTP/1.1 204 No Content\r\n\r\n", "HTTP/1.1 200 OK\r\n", ""),
    OK("204 with cl", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", "", ""),
    OK("304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", "", ""),
    OK("304 chunked header", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", "", ""),
    OK("100 continue", "HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 200 OK\r\n", ""),
    OK("103 early hints", "HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n", "HTTP/1.1 200", ""),
    OKF("101 tunnel", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        "\x81\x05hello", "", "\x81\x05hello", F_EOF),
    OKF("head response cl", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", "HTTP/1.1 200 OK\r\n", "", F_HEADREQ),
    OKF("head response chunked", RESP_CHUNKED, "HTTP/1.1 200 OK\r\n", "", F_HEADREQ),
    OK("value with obs-text", "HTTP/1.1 200 OK\r\nX-A: \xff\x80\r\nContent-Length: 0\r\n\r\n", "", ""),
    OK("empty value", "HTTP/1.1 200 OK\r\nX-A:\r\nContent-Length: 0\r\n\r\n", "", ""),
    OK("upper names", "HTTP/1.1 200 OK\r\nCONTENT-LENGTH: 2\r\n\r\nok", "", "ok"),
    OK("te upper", "HTTP/1.1 200 OK\r\nTRANSFER-ENCODING: Chunked\r\n\r\n0\r\n\r\n", "", ""),
    MORE("head incomplete", "", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n", ""),
    MORE("status incomplete", "", "HTTP/1.1 20", ""),
    MORE("cl body incomplete", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", "", "ab"),
    MORE("close delimited open", "HTTP/1.1 200 OK\r\n\r\npartial", "", "partial"),
    /* refused: every fault is 502 and the connection is not reused */
    BAD("bare lf status", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", 502),
    BAD("bare lf header", "HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n", 502),
    BAD("bare lf end", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n", 502),
    BAD("bare cr status", "HTTP/1.1 200 OK\rContent-Length: 0\r\n\r\n", 502),
    BAD("bare cr header", "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", 502),
    BAD("leading crlf", "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("leading space", " HTTP/1.1 200 OK\r\n\r\n", 502),
    BAD("garbage", "HTTP/1.1 garbage\r\n\r\n", 502),
    BAD("two digit status", "HTTP/1.1 20 OK\r\n\r\n", 502),
    BAD("four digit status", "HTTP/1.1 2000 OK\r\n\r\n", 502),
    BAD("status below 100", "HTTP/1.1 099 X\r\n\r\n", 502),
    BAD("status letters", "HTTP/1.1 2x0 OK\r\n\r\n", 502),
    BAD("double space status", "HTTP/1.1  200 OK\r\n\r\n", 502),
    BAD("version 2", "HTTP/2.0 200 OK\r\n\r\n", 502),
    BAD("version 1.2", "HTTP/1.2 200 OK\r\n\r\n", 502),
    BAD("version lower", "http/1.1 200 OK\r\n\r\n", 502),
    BAD("icy", "ICY 200 OK\r\n\r\n", 502),
    BAD("reason ctl", "HTTP/1.1 200 O\x01K\r\n\r\n", 502),
    BAD("reason nul", "HTTP/1.1 200 O\0K\r\n\r\n", 502),
    BAD("obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n", 502),
    BAD("space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\nabc", 502),
    BAD("name ctl", "HTTP/1.1 200 OK\r\nX\x01: a\r\n\r\n", 502),
    BAD("value nul", "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n", 502),
    BAD("value del", "HTTP/1.1 200 OK\r\nX: a\x7f\r\n\r\n", 502),
    BAD("cl and te", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 502),
    BAD("cl differing", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 502),
    BAD("cl invalid", "HTTP/1.1 200 OK\r\nContent-Length: 3a\r\n\r\nabc", 502),
    BAD("cl negative", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 502),
    BAD("te gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz", 502),
    BAD("te gzip chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 502),
    BAD("te chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 502),
    BAD("te in http/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 502),
    BAD("te on 304 with cl", "HTTP/1.1 304 X\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", 502),
    BADF("cl and te to head", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 502,
         F_HEADREQ),
    BADB("chunk data not crlf", RESP_CHUNKED "3\r\nabc", "XY0\r\n\r\n", 502, "abc"),
    BADB("chunk size bare lf", RESP_CHUNKED "3", "\nabc\r\n0\r\n\r\n", 502, ""),
    BADB("chunk size bad", RESP_CHUNKED "", "g\r\nabc\r\n0\r\n\r\n", 502, ""),
    BADB("chunk size overflow", RESP_CHUNKED "1111111111111111", "1\r\n", 502, ""),
    BADB("chunk ext bad", RESP_CHUNKED "3;", "=\r\nabc\r\n0\r\n\r\n", 502, ""),
    BADB("chunk trailer bad", RESP_CHUNKED "3\r\nabc\r\n0\r\n", "X Y: 1\r\n\r\n", 502, "abc"),
    BADB("chunk trailer ctl", RESP_CHUNKED "0\r\n", "X-Bad: a\x01" "b\r\n\r\n", 502, ""),
    BADBF("truncated cl", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "", 502, "abc", F_EOF),
    BADBF("truncated chunked", RESP_CHUNKED "3\r\nabc\r\n", "", 502, "abc", F_EOF),
    BADBF("truncated in chunk", RESP_CHUNKED "5\r\nabc", "", 502, "abc", F_EOF),
};

typedef struct outcome {
    int status;      /* 0 complete, AGAIN, or the error status */
    size_t consumed;
    char body[256];
    size_t body_len;
} outcome_t;

/* Feeds the case's bytes in pieces ending at the given cut points and
 * drives the codec as a connection would: head, then body. */
static void drive(const tcase_t *c, tg_h1_kind_t kind, const size_t *cuts, size_t ncuts, outcome_t *o)
{
    char input[16384];
    size_t total = c->ok_len + c->rest_len;
    assert_true(total <= sizeof(input));
    memcpy(input, c->ok, c->ok_len);
    memcpy(input + c->ok_len, c->rest, c->rest_len);

    tg_arena_t arena;
    tg_arena_init(&arena);
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    tg_h1_reader_t r;
    tg_h1_reader_init(&r, kind);
    r.max_body = (c->flags & F_LIMIT) ? 64 : 0;
    tg_request_t req;
    tg_response_t resp;
    memset(&req, 0, sizeof(req));
    memset(&resp, 0, sizeof(resp));
    tg_headers_t trailers = { 0 };
    int head_done = 0;
    size_t fed = 0;
    memset(o, 0, sizeof(*o));
    o->status = AGAIN;
    for (size_t k = 0; k < ncuts && o->status == AGAIN; k++) {
        evbuffer_add(in, input + fed, cuts[k] - fed);
        fed = cuts[k];
        int eof = (c->flags & F_EOF) && fed == total;
        if (!head_done) {
            tg_h1_result_t res = kind == TG_H1_REQUEST
                                     ? tg_h1_read_request_head(&r, in, 4096, &arena, &req)
                                     : tg_h1_read_response_head(&r, in, 4096, &arena, &resp, c->flags & F_HEADREQ);
            if (res == TG_H1_ERROR) {
                o->status = r.error_status;
                break;
            }
            if (res == TG_H1_AGAIN)
                continue;
            head_done = 1;
            r.trailers = &trailers;
        }
        int fin = 0;
        if (tg_h1_read_body(&r, in, out, 1 << 20, eof, &fin) < 0)
            o->status = r.error_status;
        else if (fin)
            o->status = 0;
    }
    o->consumed = fed - evbuffer_get_length(in);
    o->body_len = evbuffer_remove(out, o->body, sizeof(o->body));
    evbuffer_free(in);
    evbuffer_free(out);
    tg_arena_free(&arena);
}

static int same(const outcome_t *a, const outcome_t *b)
{
    return a->status == b->status && a->consumed == b->consumed && a->body_len == b->body_len &&
           memcmp(a->body, b->body, a->body_len) == 0;
}

static void check_case(const tcase_t *c, tg_h1_kind_t kind)
{
    size_t total = c->ok_len + c->rest_len;
    size_t cuts[16384];
    outcome_t whole, other;

    cuts[0] = total;
    drive(c, kind, cuts, 1, &whole);
    if (whole.status != c->status || whole.consumed != c->ok_len || whole.body_len != c->body_len ||
        memcmp(whole.body, c->body, c->body_len) != 0) {
        fprintf(stderr, "case '%s': status %d consumed %zu body %zu, wanted status %d consumed %zu body %zu\n",
                c->name, whole.status, whole.consumed, whole.body_len, c->status, c->ok_len, c->body_len);
        fail();
    }
    /* split in two at every byte boundary */
    for (size_t k = 1; k < total; k++) {
        cuts[0] = k;
        cuts[1] = total;
        drive(c, kind, cuts, 2, &other);
        if (!same(&whole, &other)) {
            fprintf(stderr, "case '%s' split at %zu: status %d consumed %zu (whole: %d %zu)\n", c->name, k,
                    other.status, other.consumed, whole.status, whole.consumed);
            fail();
        }
    }
    /* one byte at a time */
    for (size_t k = 0; k < total; k++)
        cuts[k] = k + 1;
    drive(c, kind, cuts, total, &other);
    if (!same(&whole, &other)) {
        fprintf(stderr, "case '%s' byte by byte: status %d consumed %zu (whole: %d %zu)\n", c->name, other.status,
                other.consumed, whole.status, whole.consumed);
        fail();
    }
}

static void test_request_table(void **state)
{
    size_t n = sizeof(requests) / sizeof(requests[0]);
    assert_true(n >= 150);
    for (size_t i = 0; i < n; i++)
        check_case(&requests[i], TG_H1_REQUEST);
}

static void test_response_table(void **state)
{
    size_t n = sizeof(responses) / sizeof(responses[0]);
    assert_true(n >= 60);
    for (size_t i = 0; i < n; i++)
        check_case(&responses[i], TG_H1_RESPONSE);
}

/* Limits that a table row cannot show compactly. */
/* tg_h1_token_len stops at the first non-tchar, whatever follows; every
 * byte value agrees with tg_h1_is_tchar. */
static void test_token_len(void **state)
{
    (void)state;
    for (unsigned c = 0; c < 256; c++) {
        char s[3] = { 'a', (char)c, 'b' };
        assert_int_equal(tg_h1_token_len(s, 3), tg_h1_is_tchar((unsigned char)c) ? 3 : 1);
    }
    assert_int_equal(tg_h1_token_len("", 0), 0);
    assert_int_equal(tg_h1_token_len("content-type", 12), 12);
    assert_int_equal(tg_h1_token_len("x_a b", 5), 3);
    assert_int_equal(tg_h1_token_len("abcdef", 2), 2); /* bounded by len */
    assert_int_equal(tg_h1_token_len("\r\nx", 3), 0);
}

/* The reference: the first byte a field value may not hold. */
static size_t content_prefix(const char *v, size_t len)
{
    size_t i = 0;
    while (i < len && ((unsigned char)v[i] >= 0x20 || v[i] == '\t') && (unsigned char)v[i] != 0x7f)
        i++;
    return i;
}

/* tg_h1_field_content_len and tg_h1_token_len over every length up to 40
 * with one byte of each kind at every position: the word-at-a-time and
 * unrolled parts (and the overlapping last word) agree with a byte loop. */
static void test_scans_every_position(void **state)
{
    (void)state;
    const unsigned char probes[] = { '\r', '\n', 0, 0x7f, 0x01, '\t', ' ', 0x80, 0xff, '"', ':', 'A' };
    char buf[48];
    for (size_t len = 0; len <= 40; len++) {
        memset(buf, 'a', sizeof(buf));
        assert_int_equal(tg_h1_field_content_len(buf, len), len);
        assert_int_equal(tg_h1_token_len(buf, len), len);
        for (size_t pos = 0; pos < len; pos++)
            for (size_t k = 0; k < sizeof(probes); k++) {
                memset(buf, 'a', sizeof(buf));
                buf[pos] = (char)probes[k];
                buf[len] = '\r'; /* past the end: never looked at */
                assert_int_equal(tg_h1_field_content_len(buf, len), content_prefix(buf, len));
                assert_int_equal(tg_h1_token_len(buf, len), tg_h1_is_tchar(probes[k]) ? len : pos);
            }
    }
}

static void test_limits(void **state)
{
    char big[8192];
    /* 431: a head over the limit, and too many fields */
    int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: h\r\nX: %04100d\r\n\r\n", 0);
    tcase_t c = { "head over 4 KiB", "", 0, big, (size_t)n, 431, "", 0, 0 };
    check_case(&c, TG_H1_REQUEST);
    size_t len = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < TG_H1_MAX_FIELDS; i++)
        len += (size_t)snprintf(big + len, sizeof(big) - len, "X%d:\r\n", i);
    len += (size_t)snprintf(big + len, sizeof(big) - len, "\r\n");
    c = (tcase_t){ "too many fields", "", 0, big, len, 431, "", 0, 0 };
    check_case(&c, TG_H1_REQUEST);
    /* a chunk extension over its byte limit */
    len = (size_t)snprintf(big, sizeof(big), "%s5;a=\"", POST_CHUNKED);
    memset(big + len, 'x', TG_H1_MAX_CHUNK_EXT_BYTES);
    len += TG_H1_MAX_CHUNK_EXT_BYTES;
    len += (size_t)snprintf(big + len, sizeof(big) - len, "\"\r\nhello\r\n0\r\n\r\n");
    tg_arena_t arena;
    tg_arena_init(&arena);
    struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
    tg_h1_reader_t r;
    tg_request_t req = { 0 };
    tg_h1_reader_init(&r, TG_H1_REQUEST);
    evbuffer_add(in, big, len);
    assert_int_equal(tg_h1_read_request_head(&r, in, 4096, &arena, &req), TG_H1_OK);
    int fin = 0;
    assert_int_equal(tg_h1_read_body(&r, in, out, 1 << 20, 0, &fin), -1);
    assert_int_equal(r.error_status, 400);
    assert_string_equal(r.error_msg, "chunk extension too long");
    evbuffer_free(in);
    evbuffer_free(out);
    tg_arena_free(&arena);
}

/* What the parser reports for the head, beyond acceptance. */
static void test_head_results(void **state)
{
    tg_h1_parser_t p;
    static const char req[] = "\r\nPATCH /x?y HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 7\r\n\r\n";
    tg_h1_parser_init(&p, TG_H1_REQUEST);
    int fields = 0;
    tg_h1p_result_t r;
    while ((r = tg_h1_parse_head(&p, req, sizeof(req) - 1)) == TG_H1P_FIELD)
        fields++;
    assert_int_equal(r, TG_H1P_DONE);
    assert_int_equal(fields, 2);
    assert_int_equal(p.pos, sizeof(req) - 1);
    assert_true(tg_h1_span_ieq(req, p.method, "patch", 5));
    assert_int_equal(p.target.off, 8);
    assert_int_equal(p.target.len, 4);
    assert_int_equal(p.version, 10);
    assert_true(p.conn_keep_alive);
    assert_int_equal(p.framing, TG_H1_FRAME_LENGTH);
    assert_int_equal(p.content_length, 7);

    static const char resp[] = "HTTP/1.1 503 Busy\r\nConnection: close\r\n\r\n";
    tg_h1_parser_init(&p, TG_H1_RESPONSE);
    while ((r = tg_h1_parse_head(&p, resp, sizeof(resp) - 1)) == TG_H1P_FIELD)
        assert_int_equal(p.field_id, TG_H1F_CONNECTION);
    assert_int_equal(r, TG_H1P_DONE);
    assert_int_equal(p.status, 503);
    assert_true(p.conn_close);
    assert_int_equal(p.framing, TG_H1_FRAME_CLOSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_table),
        cmocka_unit_test(test_response_table),
        cmocka_unit_test(test_token_len),
        cmocka_unit_test(test_scans_every_position),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_head_results),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
