//! Channels as operators watch and steer them (issue 18): health from their connectors' calls,
//! backlog, dead letters, pauses and maintenance windows, automatic redrive. One view for the
//! gRPC call, `jifen admin channels` and the console's Channels page.

use std::collections::{BTreeMap, HashSet};

use jifen_mesh::bus::subjects::{CMD_STREAM, PORTAL_CONSUMER, channel_consumer};
use jifen_mesh::domain::ChannelId;
use jifen_mesh::time::now_unix_ms;
use jifen_proto::v1::{
    ActivityMinute, ChannelHealth, ChannelPause, PauseChannelRequest, PauseChannelResponse,
    ResumeChannelRequest, ResumeChannelResponse, SetAutoRedriveRequest, SetAutoRedriveResponse,
};
use tonic::{Request, Response, Status};

use super::grpc::required_note;

use super::Admin;
use crate::error::MallError;
use crate::store::controls::{self, Pause};
use crate::store::dead_letters;

/// What `channel_id` means in a channel call: a channel of the registry, or `portal`.
fn consumer_of(channel_id: &str) -> Result<String, MallError> {
    if channel_id == PORTAL_CONSUMER {
        return Ok(PORTAL_CONSUMER.to_owned());
    }
    let id = ChannelId::parse("channel_id", channel_id)?;
    Ok(channel_consumer(id.as_str()))
}

pub(crate) fn pause_message(pause: &Pause) -> ChannelPause {
    ChannelPause {
        id: pause.id,
        channel_id: jifen_mesh::bus::subjects::consumer_channel(&pause.consumer)
            .unwrap_or(&pause.consumer)
            .to_owned(),
        starts_at_unix_ms: pause.starts_at_ms,
        ends_at_unix_ms: pause.ends_at_ms,
        note: pause.note.clone(),
        operator: pause.actor.clone(),
    }
}

impl Admin {
    /// The consumer group of a channel the portal's registry lists (or of the portal): an
    /// operator's pause or switch for a channel that does not exist is refused, not kept.
    async fn known_consumer(&self, channel_id: &str) -> Result<String, MallError> {
        let consumer = consumer_of(channel_id)?;
        if consumer == PORTAL_CONSUMER {
            return Ok(consumer);
        }
        let listed = self.registry.listed().await?;
        if listed.iter().any(|c| c.channel_id == channel_id) {
            Ok(consumer)
        } else {
            Err(MallError::UnknownChannel(channel_id.to_owned()))
        }
    }

    /// Every channel of the portal's registry, and the portal, as operators watch them.
    pub(crate) async fn channel_health(&self) -> Result<Vec<ChannelHealth>, MallError> {
        let listed = self.registry.listed().await?;
        let db = self.store.database();
        let open = dead_letters::open_by_consumer(db).await?;
        let off: HashSet<String> = controls::auto_redrive_off(db).await?.into_iter().collect();
        let now = now_unix_ms();
        let hour_ago = now - now.rem_euclid(60_000) - 59 * 60_000;
        let dead_per_minute = dead_letters::per_minute_since(db, hour_ago).await?;
        let standing = self.pauses.standing();
        let mut named: Vec<(String, String, String)> = listed
            .into_iter()
            .map(|c| {
                (
                    c.channel_id.clone(),
                    channel_consumer(&c.channel_id),
                    c.name,
                )
            })
            .collect();
        named.push((
            PORTAL_CONSUMER.to_owned(),
            PORTAL_CONSUMER.to_owned(),
            "the portal's quotas".to_owned(),
        ));
        let mut out = Vec::with_capacity(named.len());
        for (channel_id, consumer, name) in named {
            let health = self.health.get(&consumer);
            let (pending, ack_pending) = self.backlog(&consumer).await;
            let settled = self.activity.settled(&channel_id);
            let mut minutes: BTreeMap<i64, ActivityMinute> = BTreeMap::new();
            for (start, answered, failed) in &health.minutes {
                let entry = minutes.entry(*start).or_default();
                entry.start_unix_ms = *start;
                entry.answered_calls = *answered;
                entry.failed_calls = *failed;
            }
            for (start, count) in &settled {
                let entry = minutes.entry(*start).or_default();
                entry.start_unix_ms = *start;
                entry.settled_orders = *count;
            }
            for ((of, start), count) in &dead_per_minute {
                if *of == consumer {
                    let entry = minutes.entry(*start).or_default();
                    entry.start_unix_ms = *start;
                    entry.dead_letters = *count;
                }
            }
            let in_force = self.pauses.in_force(&consumer, now);
            out.push(ChannelHealth {
                channel_id,
                name,
                health: health.health.as_str().to_owned(),
                why: health.why.clone(),
                answered: health.answered,
                failed: health.failed,
                error_percent: health.error_percent(),
                p50_ms: health.p50_ms.unwrap_or(0),
                p99_ms: health.p99_ms.unwrap_or(0),
                last_error: health.last_error.clone(),
                last_error_unix_ms: health.last_error_at_ms,
                last_ok_unix_ms: health.last_ok_at_ms,
                replicas: u32::try_from(health.replicas).unwrap_or(u32::MAX),
                answering_since_unix_ms: health.answering_since_ms.unwrap_or(0),
                pending,
                ack_pending,
                open_dead_letters: open.get(&consumer).copied().unwrap_or(0),
                pause: in_force.as_ref().map(pause_message),
                windows_ahead: standing
                    .iter()
                    .filter(|p| p.consumer == consumer && p.ahead(now))
                    .map(pause_message)
                    .collect(),
                auto_redrive: !off.contains(&consumer),
                hold_ttl_ms: self
                    .health
                    .hold_ttl(&consumer)
                    .map_or(0, |ttl| i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
                minutes: minutes
                    .into_values()
                    .filter(|m| m.start_unix_ms >= hour_ago)
                    .collect(),
                consumer,
            });
        }
        Ok(out)
    }

    /// A consumer group's commands not yet delivered and not yet acked; -1 when it is missing.
    async fn backlog(&self, consumer: &str) -> (i64, i64) {
        let info = async {
            let stream = self.js.get_stream(CMD_STREAM).await.ok()?;
            let info = stream.consumer_info(consumer).await.ok()?;
            Some((info.num_pending, info.num_ack_pending))
        };
        match info.await {
            Some((pending, ack_pending)) => (
                i64::try_from(pending).unwrap_or(i64::MAX),
                i64::try_from(ack_pending).unwrap_or(i64::MAX),
            ),
            None => (-1, -1),
        }
    }

    pub(crate) async fn declare_pause(
        &self,
        request: &PauseChannelRequest,
        note: &str,
        actor: &str,
    ) -> Result<Pause, MallError> {
        let consumer = self.known_consumer(&request.channel_id).await?;
        let now = now_unix_ms();
        let starts_at_ms = if request.starts_at_unix_ms == 0 {
            now
        } else {
            request.starts_at_unix_ms
        };
        if request.ends_at_unix_ms != 0 && request.ends_at_unix_ms <= starts_at_ms.max(now) {
            return Err(jifen_mesh::domain::InvalidField::new(
                "ends_at_unix_ms",
                "must be after the start and in the future (0: until resumed)",
            )
            .into());
        }
        let mut pause = Pause {
            id: 0,
            consumer,
            starts_at_ms,
            ends_at_ms: request.ends_at_unix_ms,
            note: note.to_owned(),
            actor: actor.to_owned(),
            created_at_ms: now,
            ended_at_ms: 0,
            end_note: String::new(),
        };
        pause.id = controls::pause(self.store.database(), &pause).await?;
        self.refresh_pauses().await?;
        Ok(pause)
    }

    pub(crate) async fn end_pauses(&self, channel_id: &str, note: &str) -> Result<u64, MallError> {
        let consumer = consumer_of(channel_id)?;
        let ended = controls::resume(self.store.database(), &consumer, note, now_unix_ms()).await?;
        self.refresh_pauses().await?;
        Ok(ended)
    }

    pub(crate) async fn switch_auto_redrive(
        &self,
        channel_id: &str,
        on: bool,
        note: &str,
        actor: &str,
    ) -> Result<(), MallError> {
        let consumer = self.known_consumer(channel_id).await?;
        controls::set_auto_redrive(
            self.store.database(),
            &consumer,
            on,
            note,
            actor,
            now_unix_ms(),
        )
        .await?;
        Ok(())
    }

    /// The pre-check sees a pause at once in this process; others within a round of the
    /// pause loop, which also sets the bus.
    async fn refresh_pauses(&self) -> Result<(), MallError> {
        let standing = controls::standing(self.store.database(), now_unix_ms()).await?;
        self.pauses.set(standing);
        self.pauses_changed.notify_one();
        Ok(())
    }
}

/// The gRPC calls (`AdminService` delegates here): check, act, audit.
impl Admin {
    pub(super) async fn pause_channel_call(
        &self,
        request: Request<PauseChannelRequest>,
    ) -> Result<Response<PauseChannelResponse>, Status> {
        const ACTION: &str = "PauseChannel";
        let caller = self
            .acting(&request, ACTION, &request.get_ref().channel_id)
            .await?;
        let request = request.into_inner();
        let note = required_note(request.note.clone())?;
        let result = self
            .declare_pause(&request, &note, &caller.operator.name)
            .await;
        let pause = self
            .audited(&caller, ACTION, &request.channel_id, &note, result)
            .await?;
        tracing::warn!(channel_id = %request.channel_id, %note, starts_at_ms = pause.starts_at_ms, ends_at_ms = pause.ends_at_ms, "channel pause declared");
        Ok(Response::new(PauseChannelResponse {
            pause: Some(pause_message(&pause)),
        }))
    }

    pub(super) async fn resume_channel_call(
        &self,
        request: Request<ResumeChannelRequest>,
    ) -> Result<Response<ResumeChannelResponse>, Status> {
        const ACTION: &str = "ResumeChannel";
        let caller = self
            .acting(&request, ACTION, &request.get_ref().channel_id)
            .await?;
        let request = request.into_inner();
        let note = required_note(request.note)?;
        let result = self.end_pauses(&request.channel_id, &note).await;
        let ended = self
            .audited(&caller, ACTION, &request.channel_id, &note, result)
            .await?;
        tracing::info!(channel_id = %request.channel_id, ended, "channel resumed");
        Ok(Response::new(ResumeChannelResponse {
            ended: u32::try_from(ended).unwrap_or(u32::MAX),
        }))
    }

    pub(super) async fn set_auto_redrive_call(
        &self,
        request: Request<SetAutoRedriveRequest>,
    ) -> Result<Response<SetAutoRedriveResponse>, Status> {
        const ACTION: &str = "SetAutoRedrive";
        let caller = self
            .acting(&request, ACTION, &request.get_ref().channel_id)
            .await?;
        let request = request.into_inner();
        let note = required_note(request.note)?;
        let result = self
            .switch_auto_redrive(
                &request.channel_id,
                request.enabled,
                &note,
                &caller.operator.name,
            )
            .await;
        self.audited(&caller, ACTION, &request.channel_id, &note, result)
            .await?;
        Ok(Response::new(SetAutoRedriveResponse {}))
    }
}
