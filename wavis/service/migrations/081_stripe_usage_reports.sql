-- 081 (issue 17): overage of Stripe-billed accounts reported to Stripe once per period.
-- One row per (account, period) once its billed usage by LIVE keys was sent to Stripe as an
-- invoice item (test/dev keys' usage is never billed through Stripe); the Stripe call carries an
-- idempotency key derived from the same pair, so a crash between the call and this row cannot
-- bill twice.
CREATE TABLE stripe_usage_reports (
    account_id               text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    period_start             date NOT NULL,
    fcu_live                 bigint NOT NULL,
    amount_usd               numeric(14, 2) NOT NULL,
    stripe_invoice_item_id   text,            -- null: nothing to bill (0.00)
    reported_at              timestamptz NOT NULL,
    PRIMARY KEY (account_id, period_start)
);
