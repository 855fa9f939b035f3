//! An undo stack for multi-step host operations (RunPodSandbox, CreateContainer): each step that
//! changed the host pushes how to take it back; on failure the steps are undone in reverse
//! order; on success the stack is disarmed.

/// Steps to undo, run in reverse order when dropped while armed.
#[derive(Default)]
pub struct Undo {
    steps: Vec<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Undo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Undo({} steps)", self.steps.len())
    }
}

impl Undo {
    pub fn new() -> Undo {
        Undo::default()
    }

    /// Records how to take back a step that has just succeeded.
    pub fn push(&mut self, step: impl FnOnce() + Send + 'static) {
        self.steps.push(Box::new(step));
    }

    /// The operation succeeded: keep everything.
    pub fn disarm(mut self) {
        self.steps.clear();
    }

    /// Undoes everything now (also what dropping does).
    pub fn rollback(mut self) {
        self.run();
    }

    fn run(&mut self) {
        while let Some(step) = self.steps.pop() {
            step();
        }
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        self.run();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn undoes_in_reverse_unless_disarmed() {
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let mut u = Undo::new();
            for i in 0..3 {
                let l = log.clone();
                u.push(move || l.lock().expect("lock").push(i));
            }
        }
        assert_eq!(*log.lock().expect("lock"), vec![2, 1, 0]);
        let mut u = Undo::new();
        let l = log.clone();
        u.push(move || l.lock().expect("lock").push(9));
        u.disarm();
        assert_eq!(log.lock().expect("lock").len(), 3);
    }
}
