//! The message model round-trips: parse(serialize(m)) == m, for any message
//! the model can hold, alone or several to an envelope.

use proptest::prelude::*;
use rs::message::*;
use rs::time::Timestamp;

fn name() -> impl Strategy<Value = Name> {
    "[A-Za-z0-9][A-Za-z0-9._@=,+-]{0,40}".prop_map(|s| Name::new("name", s).unwrap())
}

fn text() -> impl Strategy<Value = Text> {
    // Any XML character, including whitespace at the ends, markup characters and non-ASCII.
    proptest::collection::vec(
        prop_oneof![
            Just('\t'),
            Just('\n'),
            Just('\r'),
            Just(' '),
            Just('<'),
            Just('&'),
            Just('"'),
            Just(']'),
            any::<char>().prop_filter("xml char", |c| is_xml_char(*c)),
            "[a-z]".prop_map(|s| s.chars().next().unwrap()),
        ],
        0..60,
    )
    .prop_map(|cs| Text::new("text", cs.into_iter().collect::<String>()).unwrap())
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0i64..4_102_444_800_000_000).prop_map(Timestamp::from_micros)
}

fn id() -> impl Strategy<Value = MessageId> {
    prop_oneof![
        timestamp().prop_map(MessageId::mint),
        "[A-Za-z0-9_][A-Za-z0-9_-]{0,30}".prop_map(|s| MessageId::parse(&s).unwrap()),
    ]
}

fn qos() -> impl Strategy<Value = Qos> {
    (proptest::option::of(timestamp()), 0usize..3, 0usize..2).prop_map(|(expiry, p, s)| Qos {
        expiry,
        precedence: Precedence::ALL[p],
        persistence: Persistence::ALL[s],
    })
}

fn data() -> impl Strategy<Value = Data> {
    (
        prop_oneof![
            Just("application/octet-stream"),
            Just("text/plain; charset=utf-8"),
            Just("text/xml")
        ],
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            "[ -~\n\t]{0,200}".prop_map(String::into_bytes),
        ],
    )
        .prop_map(|(m, bytes)| Data {
            mime_type: MimeType::new(m).unwrap(),
            bytes,
        })
}

fn content() -> impl Strategy<Value = Content> {
    prop_oneof![
        (
            name(),
            0usize..5,
            name(),
            proptest::option::of(name()),
            text(),
            proptest::option::of(data())
        )
            .prop_map(|(t, s, st, i, x, d)| Content::Alarm(Alarm {
                alarm_type: t,
                severity: Severity::ALL[s],
                state: st,
                instance: i,
                text: x,
                data: d
            })),
        (name(), 0usize..5, text(), proptest::option::of(data())).prop_map(|(t, s, x, d)| {
            Content::Event(Event {
                event_type: t,
                severity: Severity::ALL[s],
                text: x,
                data: d,
            })
        }),
        (0usize..4, proptest::option::of(name()), id(), text()).prop_map(|(s, c, a, r)| {
            Content::MessageResponse(MessageResponse {
                status: ResponseStatus::ALL[s],
                reason_code: c,
                answers: a,
                reason: r,
            })
        }),
        (
            name(),
            name(),
            any::<u64>(),
            proptest::option::of(id()),
            proptest::option::of(digest())
        )
            .prop_map(|(c, s, n, t, d)| Content::BulkDataRequest(BulkDataRequest {
                class: c,
                subclass: s,
                size: n,
                transfer: t,
                digest: d,
                mime_type: Some(MimeType::octet_stream()),
                sealed: (n % 2 == 0).then(|| rs::message::Sealing {
                    header: (0..(n % 300) as u8).collect(),
                    size: n,
                }),
            })),
        (
            0usize..3,
            proptest::option::of(text()),
            proptest::option::of(text()),
            id(),
            proptest::option::of(id()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(digest())
        )
            .prop_map(|(s, r, l, a, t, c, v)| {
                Content::BulkDataResponse(BulkDataResponse {
                    status: BulkStatus::ALL[s],
                    reason: r,
                    location: l,
                    answers: a,
                    transfer: t,
                    chunk_size: c,
                    ask: None,
                    verified: v,
                })
            }),
        data().prop_map(Content::Data),
    ]
}

fn digest() -> impl Strategy<Value = Digest> {
    proptest::array::uniform32(any::<u8>()).prop_map(|b| {
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        Digest::new(format!("sha256:{hex}")).unwrap()
    })
}

fn locator() -> impl Strategy<Value = Locator> {
    prop_oneof![
        (name(), name(), name(), qos()).prop_map(|(c, t, v, q)| Locator::Source(Source {
            component: c,
            component_type: t,
            version: v,
            qos: q
        })),
        (
            proptest::collection::vec((any::<bool>(), name()), 1..5),
            qos()
        )
            .prop_map(|(ts, q)| Locator::Destination(Destination {
                targets: ts
                    .into_iter()
                    .map(|(g, n)| if g {
                        Target::Group(n)
                    } else {
                        Target::Component(n)
                    })
                    .collect(),
                qos: q
            })),
    ]
}

fn routing() -> impl Strategy<Value = Routing> {
    (
        name(),
        proptest::option::of(timestamp()),
        proptest::option::of(timestamp()),
    )
        .prop_map(|(c, r, s)| Routing {
            component: c,
            received: r,
            sent: s,
        })
}

fn message() -> impl Strategy<Value = Message> {
    (
        id(),
        timestamp(),
        name(),
        name(),
        locator(),
        proptest::option::of(id()),
        proptest::option::of(text()),
        proptest::option::of(any::<u64>()),
        proptest::collection::vec(routing(), 0..4),
        content(),
    )
        .prop_map(
            |(
                id,
                created,
                class,
                subclass,
                locator,
                in_reply_to,
                origin_key,
                epoch,
                routing,
                content,
            )| Message {
                header: Header {
                    id,
                    created,
                    class,
                    subclass,
                    locator,
                    in_reply_to,
                    origin_key,
                    epoch,
                    routing,
                },
                content,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn one_message_round_trips(m in message()) {
        let bytes = envelope::to_bytes(std::slice::from_ref(&m));
        let back = envelope::parse(&bytes).map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&bytes))))?;
        prop_assert_eq!(back, vec![m.clone()]);
        let header = envelope::first_header(&bytes[..]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(header, m.header);
    }

    #[test]
    fn envelopes_of_several_messages_round_trip(ms in proptest::collection::vec(message(), 1..5)) {
        // IDs within one envelope must differ to be told apart.
        let mut ms = ms;
        for (i, m) in ms.iter_mut().enumerate() {
            m.header.id = MessageId::parse(&format!("{}-{i}", m.header.id)).unwrap();
        }
        let bytes = envelope::to_bytes(&ms);
        prop_assert_eq!(envelope::parse(&bytes).unwrap(), ms.clone());
        let headers: Vec<Header> = ms.iter().map(|m| m.header.clone()).collect();
        prop_assert_eq!(envelope::parse_headers(&bytes).unwrap(), headers);
    }

    #[test]
    fn every_line_is_mail_safe(m in message()) {
        let bytes = envelope::to_bytes(std::slice::from_ref(&m));
        for line in bytes.split(|&b| b == b'\n') {
            prop_assert!(line.len() < 998, "line of {} bytes", line.len());
            prop_assert!(line.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)), "non-ASCII line {:?}", String::from_utf8_lossy(line));
        }
    }
}
