//! One call of the API, driven through the request pipeline: the key fitted to the partner,
//! a token, a fresh stamp and signature per attempt, the rate limit, the send, a token refused
//! or a 429 answered once more, the evidence kept, and the answer verified and read.

use std::time::Duration;

use tonic::Status;

use crate::answer::{self, Answer, Received};
use crate::config::{Call, KeyHash};
use crate::template::{Escape, Values};
use crate::{CallKey, HttpChannel, crypto, evidence, limit, request};

impl HttpChannel {
    /// The key a partner sees for an order's line (`key`, fitted by `key_hash`).
    pub(crate) fn idempotency_key(&self, key: CallKey<'_>) -> String {
        let values = Values {
            order_id: key.order_id,
            user_id: key.user_id,
            channel_id: self.channel_id(),
            points: key.points,
            ..Values::default()
        };
        let rendered = self.config.key.render(&values, Escape::Raw);
        match self.config.key_hash {
            KeyHash::None => rendered,
            KeyHash::Sha256 => {
                let mut hex = crypto::sha256_hex(rendered.as_bytes());
                hex.truncate(self.config.key_length);
                hex
            }
        }
    }

    pub(crate) async fn call(&self, call: &Call, key: CallKey<'_>) -> Result<Answer, Status> {
        let idempotency_key = self.idempotency_key(key);
        let amount = self
            .config
            .amount
            .map(|a| a.to_text(key.points))
            .unwrap_or_default();
        let (mut refreshed, mut paused) = (false, 0);
        let (what, received) = loop {
            let token = match &self.auth {
                Some(auth) => auth.token(&self.client).await?,
                None => String::new(),
            };
            // Each attempt is stamped and signed afresh, under the same key.
            let stamp = request::Stamp::now(&self.config);
            let values = Values {
                order_id: key.order_id,
                user_id: key.user_id,
                channel_id: self.channel_id(),
                points: key.points,
                key: &idempotency_key,
                amount: &amount,
                timestamp: &stamp.timestamp,
                nonce: &stamp.nonce,
                token: &token,
                captures: key.captured,
                ..Values::default()
            };
            let request = request::build(&self.config, call, &values)
                .map_err(|e| Status::unavailable(format!("{} was not sent: {e}", call.name)))?;
            // Named without its query: a query may carry a signature or a token.
            let what = format!(
                "{} {}",
                request.method,
                request.url.split('?').next().unwrap_or_default()
            );
            let permit = self.limiter.acquire().await;
            let sent = self.send(&request, &what).await;
            drop(permit);
            let shown = request.redacted(self.config.signing.as_deref());
            let exchange = |status: u16, answer: String| jifen_mesh::connector::Exchange {
                at_unix_ms: jifen_mesh::time::now_unix_ms(),
                call: call.name.to_owned(),
                request: shown.clone(),
                status,
                answer,
            };
            let received = match sent {
                Ok(received) => {
                    self.evidence.record(
                        key.order_id,
                        key.user_id,
                        exchange(received.status.as_u16(), evidence::kept(&received.bytes)),
                    );
                    received
                }
                Err(status) => {
                    self.evidence.record(
                        key.order_id,
                        key.user_id,
                        exchange(0, status.message().to_owned()),
                    );
                    return Err(status);
                }
            };
            let status = received.status.as_u16();
            if let Some(auth) = &self.auth
                && matches!(status, 401 | 403)
            {
                // "Refresh", not "this order is invalid": once with a new token, and after
                // that not applied, for the connector to try again later.
                auth.refused(&token).await;
                if !refreshed {
                    refreshed = true;
                    continue;
                }
                return Err(Status::unavailable(format!(
                    "{what} answered {status} with a fresh token too: not applied"
                )));
            }
            if status == 429 {
                let wait = limit::retry_after(&received.headers).unwrap_or(Duration::from_secs(1));
                self.limiter.pause(wait);
                if wait <= limit::MAX_RETRY_AFTER && paused < 2 {
                    paused += 1;
                    continue;
                }
                return Err(Status::resource_exhausted(format!(
                    "{what} answered 429 (retry after {wait:?}): not applied"
                )));
            }
            break (what, received);
        };
        let body = answer::parse(self.config.answer, &received.bytes);
        let authentic = self.config.verify.as_ref().is_none_or(|verify| {
            answer::verified(verify, &received, body.as_ref(), &call.envelope)
        });
        answer::read(call, &what, &received, body, authentic)
    }

    async fn send(&self, request: &request::Request, what: &str) -> Result<Received, Status> {
        let mut builder = self.client.request(request.method.clone(), &request.url);
        for (name, value, sensitive) in &request.headers {
            let mut value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                Status::invalid_argument(format!("{what}: header {name} is not a valid value"))
            })?;
            value.set_sensitive(*sensitive);
            builder = builder.header(name.clone(), value);
        }
        if let Some((body, content_type)) = &request.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, *content_type)
                .body(body.clone());
        }
        let response = builder
            .send()
            .await
            .map_err(|e| answer::transport(what, &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| answer::transport(what, &e))?;
        Ok(Received {
            status,
            headers,
            bytes,
        })
    }
}
