use crate::__bindings::wasmhook::plugin::types as wire;
use crate::Event;

/// What a plugin decides for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stop here; the router records the reason.
    Drop(String),
    /// Pass these on: to the next plugin in the route, or to delivery.
    Emit(Vec<Output>),
}

/// One emitted event and, optionally, the configured targets it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub event: Event,
    /// Names of configured targets. Empty means the route's targets.
    pub targets: Vec<String>,
}

impl Outcome {
    /// Filter: pass the event on unchanged (or changed: a transform).
    pub fn keep(event: Event) -> Self {
        Outcome::Emit(vec![Output {
            event,
            targets: Vec::new(),
        }])
    }

    /// Filter: stop the event, recording why.
    pub fn drop(reason: impl Into<String>) -> Self {
        Outcome::Drop(reason.into())
    }

    /// Split: emit several events to the route's targets.
    pub fn emit(events: impl IntoIterator<Item = Event>) -> Self {
        Outcome::Emit(
            events
                .into_iter()
                .map(|event| Output {
                    event,
                    targets: Vec::new(),
                })
                .collect(),
        )
    }

    /// Route: send the event to these configured targets instead of the route's.
    pub fn route<S: Into<String>>(event: Event, targets: impl IntoIterator<Item = S>) -> Self {
        Outcome::Emit(vec![Output {
            event,
            targets: targets.into_iter().map(Into::into).collect(),
        }])
    }

    pub fn is_drop(&self) -> bool {
        matches!(self, Outcome::Drop(_))
    }

    pub fn is_emit(&self) -> bool {
        matches!(self, Outcome::Emit(_))
    }

    /// The emitted (kept) events; empty for a drop. For assertions in tests.
    pub fn events(&self) -> Vec<&Event> {
        self.outputs().iter().map(|o| &o.event).collect()
    }

    /// The emitted outputs, with the targets each names; empty for a drop.
    pub fn outputs(&self) -> &[Output] {
        match self {
            Outcome::Drop(_) => &[],
            Outcome::Emit(outputs) => outputs,
        }
    }

    /// Why the event was dropped; `None` when it was not.
    pub fn drop_reason(&self) -> Option<&str> {
        match self {
            Outcome::Drop(reason) => Some(reason),
            Outcome::Emit(_) => None,
        }
    }

    /// Every target named by an output, in order, each once. Empty when the
    /// outputs go to the route's targets (or for a drop).
    pub fn targets(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for t in self.outputs().iter().flat_map(|o| &o.targets) {
            if !names.contains(&t.as_str()) {
                names.push(t);
            }
        }
        names
    }
}

impl From<Outcome> for wire::Outcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Drop(reason) => wire::Outcome::Drop(reason),
            Outcome::Emit(outputs) => wire::Outcome::Emit(
                outputs
                    .into_iter()
                    .map(|o| wire::Output {
                        event: o.event.into(),
                        targets: o.targets,
                    })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors() {
        let ev = Event::new("push", "{}");
        assert!(Outcome::keep(ev.clone()).is_emit());
        assert_eq!(Outcome::drop("no"), Outcome::Drop("no".into()));
        let split = Outcome::emit([ev.clone(), ev.clone()]);
        assert_eq!(split.events().len(), 2);
        let Outcome::Emit(outs) = Outcome::route(ev, ["ci", "audit"]) else {
            panic!("route emits");
        };
        assert_eq!(outs[0].targets, ["ci", "audit"]);
        assert!(Outcome::drop("x").events().is_empty());
    }

    #[test]
    fn accessors_for_tests() {
        let ev = Event::new("push", "{}");
        let dropped = Outcome::drop("not today");
        assert_eq!(dropped.drop_reason(), Some("not today"));
        assert!(dropped.outputs().is_empty() && dropped.targets().is_empty());
        let routed = Outcome::Emit(vec![
            Output {
                event: ev.clone(),
                targets: vec!["ci".into(), "audit".into()],
            },
            Output {
                event: ev.clone(),
                targets: vec!["ci".into()],
            },
        ]);
        assert_eq!(routed.targets(), ["ci", "audit"]);
        assert_eq!(routed.drop_reason(), None);
        assert_eq!(routed.events(), [&ev, &ev]);
    }
}
