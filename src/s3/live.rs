//! The uploads a handle has in progress, so that [`super::S3::abort_all`] (a service
//! shutting down, the CLI's Ctrl-C) can clean them up. Owned by the handle and shared
//! with its clones: no process-wide state.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::Client;

/// Something an unfinished upload wrote that must not outlive it.
#[derive(Debug, Clone)]
pub(crate) enum Leftover {
    /// A multipart upload to abort.
    Upload {
        bucket: String,
        key: String,
        upload_id: String,
    },
    /// An object (a companion header) to delete.
    Object { bucket: String, key: String },
}

impl Leftover {
    /// Aborts or deletes it (errors ignored: this is cleanup, and S3 also expires parts
    /// through lifecycle rules).
    pub(crate) async fn clean(self, client: &Client) {
        match self {
            Leftover::Upload {
                bucket,
                key,
                upload_id,
            } => {
                let _ = client
                    .abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .send()
                    .await;
            }
            Leftover::Object { bucket, key } => {
                let _ = client.delete_object().bucket(bucket).key(key).send().await;
            }
        }
    }

    /// Cleans it up in the background on the current runtime, if there is one (a guard
    /// dropped with its future); `false` if there is none.
    pub(crate) fn clean_in_background(
        self,
        client: &Client,
        done: impl FnOnce() + Send + 'static,
    ) -> bool {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                let client = client.clone();
                h.spawn(async move {
                    self.clean(&client).await;
                    done();
                });
                true
            }
            Err(_) => false,
        }
    }
}

/// The live uploads of one handle.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    next: AtomicU64,
    entries: Mutex<HashMap<u64, Leftover>>,
}

impl Registry {
    /// Records a leftover; the id removes it once it is completed or cleaned.
    pub(crate) fn add(&self, l: Leftover) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.entries.lock() {
            m.insert(id, l);
        }
        id
    }

    /// Forgets a leftover (completed, or cleaned by its owner).
    pub(crate) fn remove(&self, id: u64) {
        if let Ok(mut m) = self.entries.lock() {
            m.remove(&id);
        }
    }

    /// Takes every leftover, to clean them all.
    pub(crate) fn take_all(&self) -> Vec<Leftover> {
        match self.entries.lock() {
            Ok(mut m) => m.drain().map(|(_, l)| l).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// How many leftovers are recorded (tests).
    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().map_or(0, |m| m.len())
    }
}

/// Owns one leftover while the upload that wrote it runs: [`Guard::disarm`] when it is
/// committed, [`Guard::clean`] on failure; dropped while armed (its future was dropped),
/// it cleans up in the background on the current runtime, or leaves the entry to
/// [`super::S3::abort_all`] when there is no runtime.
pub(crate) struct Guard {
    client: Client,
    registry: std::sync::Arc<Registry>,
    id: Option<u64>,
    leftover: Option<Leftover>,
}

impl Guard {
    pub(crate) fn new(client: &Client, registry: &std::sync::Arc<Registry>, l: Leftover) -> Guard {
        let id = registry.add(l.clone());
        Guard {
            client: client.clone(),
            registry: std::sync::Arc::clone(registry),
            id: Some(id),
            leftover: Some(l),
        }
    }

    /// The upload completed: nothing to clean.
    pub(crate) fn disarm(&mut self) {
        if let Some(id) = self.id.take() {
            self.registry.remove(id);
        }
        self.leftover = None;
    }

    /// Cleans up now and waits for it.
    pub(crate) async fn clean(&mut self) {
        if let Some(l) = self.leftover.take() {
            l.clean(&self.client).await;
        }
        self.disarm();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let (Some(id), Some(l)) = (self.id, self.leftover.take()) else {
            return;
        };
        let registry = std::sync::Arc::clone(&self.registry);
        // The entry stays in the registry until the background cleanup is done, so an
        // `abort_all` racing with it still sees it (a second abort is harmless).
        if !l.clean_in_background(&self.client, move || registry.remove(id)) {
            self.id = None; // left to abort_all
        }
    }
}
