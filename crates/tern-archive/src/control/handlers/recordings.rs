//! Recording requests: start, stop (by subscription or identity), extend, truncate, purge, the
//! subscriptions listing.

use crate::control::session::ControlSession;
use crate::error::Result;
use crate::types::{Pending, PendingRecording};
use tern_protocol as proto;
use tern_protocol::{ControlResponseCode, Message};
use tern_store::RecordingId;

use super::Context;
use crate::control::adapter::source_location;
use crate::control::awaiting::Awaited;
use crate::control::proxy::queue_message;

impl Context<'_> {
    pub(super) fn start_recording(
        &mut self,
        session: &mut ControlSession,
        correlation_id: i64,
        channel: &str,
        stream_id: i32,
        source: proto::SourceLocation,
        auto_stop: bool,
    ) {
        let source = source_location(source);
        let begun = self
            .state
            .begin_recording(channel, stream_id, source, auto_stop);
        self.await_recording(session, correlation_id, begun);
    }

    /// Answer a recording subscription's start or extension when the recorder has added it; its
    /// signals go to this request from now (they may come before the recorder's answer).
    /// Answer a truncate or purge when it is done; its `Delete` signal goes to this session.
    pub(super) fn await_change(
        &mut self,
        session: &mut ControlSession,
        correlation_id: i64,
        recording_id: RecordingId,
        begun: Result<Pending<usize>>,
    ) {
        match begun {
            Ok(pending) => {
                self.delete_owners
                    .insert(recording_id, (session.id, correlation_id, self.events_seen));
                self.wait_for(
                    session.id,
                    correlation_id,
                    Awaited::Change {
                        recording_id,
                        pending,
                    },
                );
            }
            Err(error) => self.fail(session, correlation_id, &error),
        }
    }

    pub(super) fn await_recording(
        &mut self,
        session: &mut ControlSession,
        correlation_id: i64,
        begun: Result<PendingRecording>,
    ) {
        match begun {
            Ok(pending) => {
                self.recording_owners
                    .insert(pending.id(), (session.id, correlation_id));
                self.wait_for(session.id, correlation_id, Awaited::Recording(pending));
            }
            Err(error) => self.fail(session, correlation_id, &error),
        }
    }

    /// Answer a recording subscription's stop when the recorder has done it.
    pub(super) fn await_stop(
        &mut self,
        session: &mut ControlSession,
        correlation_id: i64,
        subscription_id: i64,
    ) {
        match self.state.begin_stop_recording(subscription_id) {
            Ok(pending) => self.wait_for(
                session.id,
                correlation_id,
                Awaited::Stop {
                    subscription_id,
                    pending,
                },
            ),
            Err(error) => self.fail(session, correlation_id, &error),
        }
    }

    pub(super) fn list_subscriptions(
        &self,
        session: &mut ControlSession,
        correlation_id: i64,
        request: &proto::ListRecordingSubscriptionsRequest,
    ) {
        if self.listing_in_progress(session, correlation_id) {
            return;
        }
        let subscriptions = self.state.recording_subscriptions();
        let start = usize::try_from(request.pseudo_index).ok();
        let Some(start) =
            start.filter(|start| *start < subscriptions.len() && request.subscription_count > 0)
        else {
            session.respond(
                correlation_id,
                0,
                ControlResponseCode::SubscriptionUnknown,
                "",
            );
            return;
        };
        let wanted = request.subscription_count as usize;
        let mut sent = 0;
        for subscription in &subscriptions[start..] {
            if request.apply_stream_id && subscription.stream_id != request.stream_id {
                continue;
            }
            if !subscription.channel.contains(request.channel.as_str()) {
                continue;
            }
            let message = proto::RecordingSubscriptionDescriptor {
                control_session_id: session.id,
                correlation_id,
                subscription_id: subscription.subscription_id,
                stream_id: subscription.stream_id,
                stripped_channel: proto::to_ascii_lossy(&subscription.channel),
            };
            queue_message(session, Message::RecordingSubscriptionDescriptor(message));
            sent += 1;
            if sent >= wanted {
                return;
            }
        }
        session.respond(
            correlation_id,
            0,
            ControlResponseCode::SubscriptionUnknown,
            "",
        );
    }
}
