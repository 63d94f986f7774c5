//! XML bodies (DESIGN §9): an answer read into the same tree JSON answers give, so one kind of
//! pointer reads both (`<xml><result_code>SUCCESS</result_code></xml>` is
//! `/xml/result_code`); parameters written as the children of one root element.

use quick_xml::events::Event;
use serde_json::{Map, Value};

/// An element being read: its children so far, and its text.
#[derive(Default)]
struct Frame {
    name: String,
    children: Map<String, Value>,
    text: String,
}

fn add(children: &mut Map<String, Value>, name: String, value: Value) {
    match children.get_mut(&name) {
        None => {
            children.insert(name, value);
        }
        Some(Value::Array(items)) => items.push(value),
        Some(first) => {
            let first = first.take();
            children.insert(name, Value::Array(vec![first, value]));
        }
    }
}

fn close(frame: Frame) -> Value {
    if frame.children.is_empty() {
        Value::String(frame.text.trim().to_owned())
    } else {
        Value::Object(frame.children)
    }
}

/// An XML document as a tree: an element with children is an object of them (a repeated
/// child an array, an attribute `@name`); one with only text is that text. `None` when it is
/// not well-formed.
pub fn to_json(bytes: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().expand_empty_elements = true;
    let mut stack: Vec<Frame> = vec![Frame::default()];
    loop {
        match reader.read_event().ok()? {
            Event::Start(start) => {
                let name = start.name().as_ref().to_owned();
                let mut frame = Frame {
                    name,
                    ..Frame::default()
                };
                for attribute in start.attributes() {
                    let attribute = attribute.ok()?;
                    let key = attribute.key.as_ref().to_owned();
                    let value = attribute
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .ok()?;
                    frame
                        .children
                        .insert(format!("@{key}"), Value::String(value.into_owned()));
                }
                stack.push(frame);
            }
            Event::End(_) => {
                let frame = stack.pop()?;
                let parent = stack.last_mut()?;
                let name = frame.name.clone();
                add(&mut parent.children, name, close(frame));
            }
            Event::Text(text) => stack.last_mut()?.text.push_str(text.as_ref()),
            Event::CData(data) => stack.last_mut()?.text.push_str(data.as_ref()),
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().ok()? {
                    Some(c) => c,
                    None => match reference.as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        _ => return None,
                    },
                };
                stack.last_mut()?.text.push(resolved);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let root = stack.pop()?;
    (stack.is_empty() && !root.children.is_empty()).then_some(Value::Object(root.children))
}

/// Parameters as `<root><name>value</name>…</root>`.
pub fn encode(root: &str, params: &[(String, String)]) -> String {
    let mut out = format!("<{root}>");
    for (name, value) in params {
        out.push_str(&format!(
            "<{name}>{}</{name}>",
            quick_xml::escape::escape(value.as_str())
        ));
    }
    out.push_str(&format!("</{root}>"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reads_as_the_tree_pointers_address() {
        let answer = to_json(
            br#"<?xml version="1.0"?><xml><return_code><![CDATA[SUCCESS]]></return_code>
            <points>120</points><memo>a &amp; b&#33;</memo><item n="1">x</item><item>y</item>
            <empty/></xml>"#,
        )
        .unwrap();
        assert_eq!(answer.pointer("/xml/return_code").unwrap(), "SUCCESS");
        assert_eq!(answer.pointer("/xml/points").unwrap(), "120");
        assert_eq!(answer.pointer("/xml/memo").unwrap(), "a & b!");
        assert_eq!(answer.pointer("/xml/item/0/@n").unwrap(), "1");
        assert_eq!(answer.pointer("/xml/item/1").unwrap(), "y");
        assert_eq!(answer.pointer("/xml/empty").unwrap(), "");
        assert!(to_json(b"<xml><open></xml>").is_none());
        assert!(to_json(b"not xml").is_none());
    }

    #[test]
    fn parameters_are_escaped_inside_their_elements() {
        let body = encode("request", &[("memo".into(), "<a&b>".into())]);
        assert_eq!(body, "<request><memo>&lt;a&amp;b&gt;</memo></request>");
        assert_eq!(
            to_json(body.as_bytes()).unwrap()["request"]["memo"],
            "<a&b>"
        );
    }
}
