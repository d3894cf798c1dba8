-- 083 (issues 13, 17): a job's completion and its charge in ONE statement.
--
-- jobs.complete_jobs with billing's completion hook (metering.job_usage → billing.charge) takes
-- five round trips: BEGIN, the job's fenced UPDATE, the period row locked FOR UPDATE, the usage
-- row with the period's totals, COMMIT. wavis_complete_job does the same writes in one call, so
-- jobs.complete_jobs completes and charges a job as ONE statement (its own transaction, the one
-- the job's answer waits for): usage stays written in the transaction that marks the job done.
--
-- Same order of locks as the Python path (the job row, then the account's period row), same
-- fencing (the row only while attempts = the claim's token and status = 'RUNNING'; otherwise
-- 'skipped' and nothing is written), same once-per-job charge (usage_events' unique job_id).
-- Like wavis_admit_job (082) it only ever does the ordinary case and leaves the rest to the
-- Python path, which it tells by returning 'undecided' before writing anything (at most the
-- period row of a new period, which the Python path creates the same way):
--   * a charge that only partly falls within the plan's allowance (billing.pricing's
--     proportional split of the list price stays in Python);
--   * a charge after which an alert is due (usage_alert 50/80/100 % of the allowance,
--     budget_alert at the budget's threshold; billing._once emits them, once per period).
-- p_billed_all is what the charge bills when none of it is included (billing.charge_args
-- computes it with pricing.billable_usd, so the arithmetic stays the Python path's).
-- p_fcu NULL: nothing to charge (a failed job, a job without cost): the job row only.

CREATE OR REPLACE FUNCTION wavis_complete_job(
        p_job text, p_attempt int, p_status text, p_result jsonb, p_error jsonb, p_batch_size int,
        p_queue_ms float8, p_compute_ms float8,
        p_account text, p_api_key text, p_route text, p_operation text, p_fcu bigint, p_list_usd numeric,
        p_billed_all numeric, p_request_id text, p_now timestamptz, p_period date, p_allowance bigint,
        p_overage boolean)
    RETURNS text  -- 'completed' | 'skipped' | 'undecided'
    LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_used bigint;
    v_billed_total numeric;
    v_sent text[];
    v_left bigint;
    v_over bigint;
    v_billed numeric;
    v_after bigint;
    v_pct int;
    v_limit numeric;
    v_threshold int;
    v_charge boolean := p_fcu IS NOT NULL AND p_fcu > 0;
BEGIN
    PERFORM 1 FROM jobs WHERE id = p_job AND attempts = p_attempt AND status = 'RUNNING' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'skipped';  -- a newer claim owns it, or it is final already
    END IF;
    IF v_charge THEN
        SELECT p.fcu_used, p.billed_usd, p.events_sent INTO v_used, v_billed_total, v_sent FROM usage_periods p
        WHERE p.account_id = p_account AND p.period_start = p_period FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO usage_periods (account_id, period_start) VALUES (p_account, p_period) ON CONFLICT DO NOTHING;
            SELECT p.fcu_used, p.billed_usd, p.events_sent INTO v_used, v_billed_total, v_sent FROM usage_periods p
            WHERE p.account_id = p_account AND p.period_start = p_period FOR UPDATE;
        END IF;
        IF EXISTS (SELECT 1 FROM usage_events e WHERE e.job_id = p_job) THEN
            v_charge := false;  -- charged already (billing.charge writes nothing then)
        ELSE
            IF NOT p_overage THEN
                v_billed := 0;  -- a plan without overage bills nothing (pricing.billable_usd)
            ELSE
                v_left := greatest(0, COALESCE(p_allowance - v_used, 0));
                v_over := p_fcu - least(p_fcu, v_left);
                IF v_over = 0 THEN
                    v_billed := 0;
                ELSIF v_over = p_fcu THEN
                    v_billed := p_billed_all;
                ELSE
                    RETURN 'undecided';  -- partly included: the proportional split is billing.py's
                END IF;
            END IF;
            v_after := v_used + p_fcu;
            IF p_allowance IS NOT NULL AND p_allowance <> 0 THEN
                FOREACH v_pct IN ARRAY ARRAY[50, 80, 100] LOOP  -- billing.USAGE_ALERT_PCTS
                    IF v_after * 100 >= v_pct::bigint * p_allowance
                       AND NOT (('usage_alert:' || v_pct) = ANY (v_sent)) THEN
                        RETURN 'undecided';  -- a usage_alert is due: billing.charge emits it
                    END IF;
                END LOOP;
            END IF;
            SELECT b.monthly_limit_usd, b.alert_threshold_pct INTO v_limit, v_threshold
            FROM billing_budgets b WHERE b.account_id = p_account;
            IF FOUND AND (v_billed_total + v_billed) * 100 >= v_limit * v_threshold
               AND NOT ('budget_alert' = ANY (v_sent)) THEN
                RETURN 'undecided';  -- a budget_alert is due
            END IF;
        END IF;
    END IF;
    UPDATE jobs SET status = p_status, result = p_result, error = p_error, batch_size = p_batch_size,
                    queue_ms = p_queue_ms, compute_ms = p_compute_ms, payload = NULL, finished_at = now()
    WHERE id = p_job;
    IF v_charge THEN
        INSERT INTO usage_events (account_id, api_key_id, route, operation, fcu, request_id, created_at,
                                  period_start, cost_usd, billed_usd, job_id)
        VALUES (p_account, p_api_key, p_route, p_operation, p_fcu, p_request_id, p_now, p_period, p_list_usd,
                v_billed, p_job);
        UPDATE usage_periods p SET fcu_used = p.fcu_used + p_fcu, cost_usd = p.cost_usd + p_list_usd,
                                   billed_usd = p.billed_usd + v_billed
        WHERE p.account_id = p_account AND p.period_start = p_period;
    END IF;
    RETURN 'completed';
END
$$;

-- A batch's jobs in order: their rows locked first (the Python path's lock order: every job row,
-- then the period row), then wavis_complete_job for each until one is 'undecided'; that one and
-- every later job are returned 'undecided' without being written, so the Python path completes
-- them after this call in the batch's order (the order in which charges use up the allowance).
CREATE OR REPLACE FUNCTION wavis_complete_jobs(
        p_job text[], p_attempt int[], p_status text[], p_result text[], p_error text[], p_batch_size int[],
        p_queue_ms float8[], p_compute_ms float8[],
        p_account text[], p_api_key text[], p_route text[], p_operation text[], p_fcu bigint[], p_list_usd numeric[],
        p_billed_all numeric[], p_request_id text[], p_now timestamptz[], p_period date[], p_allowance bigint[],
        p_overage boolean[])
    RETURNS TABLE (id text, verdict text)
    LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    v_i int;
    v_stop boolean := false;
BEGIN
    PERFORM 1 FROM jobs j WHERE j.id = ANY (p_job) ORDER BY j.id FOR UPDATE;
    FOR v_i IN 1 .. coalesce(array_length(p_job, 1), 0) LOOP
        id := p_job[v_i];
        IF v_stop THEN
            verdict := 'undecided';
        ELSE
            verdict := wavis_complete_job(p_job[v_i], p_attempt[v_i], p_status[v_i], p_result[v_i]::jsonb,
                                          p_error[v_i]::jsonb, p_batch_size[v_i], p_queue_ms[v_i], p_compute_ms[v_i],
                                          p_account[v_i], p_api_key[v_i], p_route[v_i], p_operation[v_i], p_fcu[v_i],
                                          p_list_usd[v_i], p_billed_all[v_i], p_request_id[v_i], p_now[v_i],
                                          p_period[v_i], p_allowance[v_i], p_overage[v_i]);
            v_stop := verdict = 'undecided';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
