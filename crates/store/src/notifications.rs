//! The outbox: notifications and Sensor trigger calls, committed before they are sent and
//! marked sent or retried later.

use sqlx::Row;

use crate::error::StoreError;
use crate::rows::*;
use crate::writer::Write;
use crate::Store;

impl Store {
    /// Queue notifications; one whose key is already queued (or delivered) is left alone.
    pub async fn notify(&self, rows: Vec<NewNotification>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write(Write::Notify(rows)).await
    }

    /// Undelivered notifications due at `now_ns`, oldest first.
    pub async fn due_notifications(
        &self,
        now_ns: i64,
        limit: i64,
    ) -> Result<Vec<Notification>, StoreError> {
        let rows = sqlx::query("SELECT id, key, webhook, body, attempts FROM notifications WHERE delivered_ns IS NULL AND next_ns <= $1 ORDER BY id LIMIT $2")
            .bind(now_ns)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Notification {
                id: r.get(0),
                key: r.get(1),
                webhook: r.get(2),
                body: r.get(3),
                attempts: r.get(4),
            })
            .collect())
    }

    /// Undelivered notifications, all webhooks.
    pub async fn pending_notifications(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM notifications WHERE delivered_ns IS NULL")
            .fetch_one(&self.read)
            .await?;
        Ok(row.get(0))
    }

    pub async fn notification_sent(&self, id: i64, at_ns: i64) -> Result<(), StoreError> {
        self.write(Write::NotificationSent { id, at_ns }).await
    }

    pub async fn notification_failed(
        &self,
        id: i64,
        next_ns: i64,
        error: String,
    ) -> Result<(), StoreError> {
        self.write(Write::NotificationFailed { id, next_ns, error })
            .await
    }
}
