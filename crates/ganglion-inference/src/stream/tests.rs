use std::time::{Duration, Instant};

use super::*;

fn limits() -> StreamLimits {
    StreamLimits::for_tokens(16, Duration::from_secs(5), Duration::from_secs(10))
}

fn decode(endpoint: Endpoint, parts: &[&[u8]]) -> Result<Streamed, StreamError> {
    let mut d = SseDecoder::new(endpoint, limits());
    for (i, p) in parts.iter().enumerate() {
        match d.push(p, Duration::from_millis(i as u64 * 10)) {
            Ok(Progress::More) => {}
            Ok(Progress::Done) => break,
            Err(f) => return Err(d.fail(f, Duration::ZERO)),
        }
    }
    d.finish(Duration::from_millis(parts.len() as u64 * 10))
}

const CHAT: &str = concat!(
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"logprobs\":{\"content\":[{\"token\":\"token_id:12\",\"logprob\":-0.5}]},\"finish_reason\":null}]}\n\n",
    ": keep-alive\n\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"logprobs\":{\"content\":[{\"token\":\"token_id:7\",\"logprob\":-1.25}]},\"finish_reason\":null}]}\r\n\r\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n",
    "data: [DONE]\n\n",
);

#[test]
fn chat_stream_split_anywhere_decodes_the_same() {
    let whole = decode(Endpoint::Chat, &[CHAT.as_bytes()]).unwrap();
    assert_eq!(whole.text, "Hello");
    assert_eq!(whole.tokens.iter().map(|t| t.id).collect::<Vec<_>>(), vec![Some(12), Some(7)]);
    assert_eq!(whole.tokens[1].logprob, Some(-1.25));
    assert_eq!(whole.finish_reason.as_deref(), Some("stop"));
    assert_eq!(whole.usage, Some(Usage { prompt_tokens: Some(5), completion_tokens: Some(2) }));
    assert!(whole.done);
    assert_eq!(whole.events, 6);
    // Byte-by-byte delivery gives the same content.
    let bytes: Vec<&[u8]> = CHAT.as_bytes().chunks(1).collect();
    let split = decode(Endpoint::Chat, &bytes).unwrap();
    assert_eq!((split.text, split.tokens.len(), split.usage), (whole.text, 2, whole.usage));
}

#[test]
fn completion_stream_and_missing_done() {
    let body = concat!(
        "data: {\"choices\":[{\"index\":0,\"text\":\" a\",\"logprobs\":{\"tokens\":[\"token_id:3\"],\"token_logprobs\":[-0.1]},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,\"finish_reason\":\"length\"}]}",
    );
    let s = decode(Endpoint::Completion, &[body.as_bytes()]).unwrap();
    assert_eq!(s.text, " a");
    assert_eq!(s.tokens[0].id, Some(3));
    assert_eq!(s.finish_reason.as_deref(), Some("length"));
    assert!(!s.done, "no [DONE]: the verifier decides whether that matters");
}

#[test]
fn bad_input_gets_its_cause() {
    let cause = |endpoint, body: &[u8]| decode(endpoint, &[body]).unwrap_err().failure.cause;
    assert_eq!(cause(Endpoint::Chat, b"data: {not json}\n\n"), Cause::Malformed);
    assert_eq!(cause(Endpoint::Chat, b"{\"choices\":[]}\n"), Cause::Malformed, "plain JSON is not SSE");
    assert_eq!(cause(Endpoint::Chat, b"data: \xff\xfe\n\n"), Cause::InvalidUtf8);
    assert_eq!(cause(Endpoint::Chat, b"data: {\"error\":{\"message\":\"boom\"}}\n\n"), Cause::MinerError);
    assert_eq!(cause(Endpoint::Chat, b"data: {\"choices\":[{\"delta\":{\"content\":5}}]}\n\n"), Cause::Malformed);
    assert_eq!(cause(Endpoint::Chat, b"data: {\"choices\":[],\"usage\":{\"completion_tokens\":-1}}\n\n"), Cause::Malformed);
    assert_eq!(cause(Endpoint::Chat, b"data: [1,2]\n\n"), Cause::Malformed);
    let long = vec![b'a'; 70 * 1024];
    assert_eq!(cause(Endpoint::Chat, &long), Cause::TooLarge);
    let many = "data: {\"choices\":[]}\n\n".repeat(200);
    assert_eq!(cause(Endpoint::Chat, many.as_bytes()), Cause::TooLarge);
}

#[test]
fn byte_budget_is_enforced_across_pushes() {
    let mut d = SseDecoder::new(Endpoint::Chat, StreamLimits { max_bytes: 100, ..limits() });
    assert!(d.push(&[b'\n'; 60], Duration::ZERO).is_ok());
    assert_eq!(d.push(&[b'\n'; 60], Duration::ZERO).unwrap_err().cause, Cause::TooLarge);
}

#[tokio::test]
async fn deadlines_name_which_one_passed() {
    let lim = StreamLimits {
        first_token_timeout: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_millis(500),
        ..limits()
    };
    // Nothing at all: the first-token deadline fires.
    let never = futures::stream::pending::<Result<Bytes, std::io::Error>>();
    let err = read_stream(never, Endpoint::Chat, lim, Instant::now()).await.unwrap_err();
    assert_eq!(err.failure.cause, Cause::Timeout);
    assert!(err.failure.detail.contains("first-token"), "{}", err.failure.detail);

    // One chunk of content, then a stall: the idle deadline fires.
    let first = Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n");
    let stall = futures::stream::iter(vec![Ok::<_, std::io::Error>(first.clone())]).chain(futures::stream::pending());
    let err = read_stream(stall, Endpoint::Chat, lim, Instant::now()).await.unwrap_err();
    assert!(err.failure.detail.contains("idle"), "{}", err.failure.detail);
    assert_eq!(err.partial.text, "x");

    // A trickle that never ends: the total deadline fires.
    let trickle = futures::stream::unfold((), move |()| {
        let first = first.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((Ok::<_, std::io::Error>(first), ()))
        }
    });
    let started = Instant::now();
    let err = read_stream(trickle, Endpoint::Chat, StreamLimits { max_events: 10_000, max_bytes: 1 << 20, ..lim }, started).await.unwrap_err();
    assert!(err.failure.detail.contains("total"), "{}", err.failure.detail);
    assert!(started.elapsed() < Duration::from_secs(2));

    // A broken connection is a disconnect.
    let broken = futures::stream::iter(vec![Err::<Bytes, _>(std::io::Error::other("reset"))]);
    let err = read_stream(broken, Endpoint::Chat, lim, Instant::now()).await.unwrap_err();
    assert_eq!(err.failure.cause, Cause::Disconnect);
}
