-- 082 (issues 13, 17): quota admission of a job in the statement that inserts it.
--
-- billing.admit_job (Python) takes five round trips inside the job's insert transaction:
-- the account row, the period row locked FOR UPDATE, the FCU reserved by the account's
-- QUEUED/RUNNING jobs, then the INSERT and the COMMIT. wavis_admit_job does the same checks
-- in one call, so jobs.insert_admitted runs admission + INSERT as ONE statement (its own
-- transaction). Exactness is the same as billing.admit_job's: a VOLATILE PL/pgSQL function
-- takes a fresh snapshot for each query it runs (READ COMMITTED), so the reservation sum is read
-- AFTER the period row lock is granted and sees every job row committed by the admissions that
-- held the lock before; the INSERT that follows in the calling statement runs under that lock,
-- which is held until the statement's transaction commits. (A plain CTE could not do this: all
-- of one statement's subqueries share the snapshot taken before the lock wait.)
--
-- It only ever ADMITS the ordinary case and never refuses: admitted = false means "let
-- billing.admit_job decide" (a subscription in status unpaid, a hard budget, a quota the job
-- would pass, a plan the caller did not describe, an unknown account): that path computes the
-- refusal, emits limit_reached once per period, and raises the 402 as before.
--
-- p_plans / p_allowances / p_overage: every plan's terms before the account's override
-- (billing.plan_terms: pricing + the configured limits); the account's monthly_fcu_override
-- replaces the allowance, as in billing.terms_of.

CREATE OR REPLACE FUNCTION wavis_admit_job(p_account text, p_cost bigint, p_now timestamptz, p_period date,
                                           p_plans text[], p_allowances bigint[], p_overage boolean[])
    RETURNS TABLE (admitted boolean, terms_plan text, terms_allowance bigint, terms_overage boolean)
    LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    v_plan text;
    v_override bigint;
    v_sub text;
    v_i int;
    v_used bigint;
    v_reserved bigint;
    v_mode text;
BEGIN
    admitted := false;
    SELECT a.plan, a.monthly_fcu_override, s.status INTO v_plan, v_override, v_sub
    FROM accounts a LEFT JOIN subscriptions s ON s.account_id = a.id WHERE a.id = p_account;
    IF NOT FOUND OR v_sub IS NOT DISTINCT FROM 'unpaid' THEN
        RETURN NEXT;
        RETURN;
    END IF;
    v_i := array_position(p_plans, v_plan);
    IF v_i IS NULL THEN
        RETURN NEXT;
        RETURN;
    END IF;
    terms_plan := v_plan;
    terms_allowance := COALESCE(v_override, p_allowances[v_i]);
    terms_overage := p_overage[v_i];
    IF p_cost <= 0 THEN
        admitted := true;
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT p.fcu_used INTO v_used FROM usage_periods p
    WHERE p.account_id = p_account AND p.period_start = p_period FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO usage_periods (account_id, period_start) VALUES (p_account, p_period) ON CONFLICT DO NOTHING;
        SELECT p.fcu_used INTO v_used FROM usage_periods p
        WHERE p.account_id = p_account AND p.period_start = p_period FOR UPDATE;
    END IF;
    -- a new snapshot: every admission that held the lock before this one has committed its row
    SELECT COALESCE(sum(j.cost_units), 0) INTO v_reserved FROM jobs j
    WHERE j.account_id = p_account AND j.status IN ('QUEUED', 'RUNNING') AND j.expires_at > p_now;
    SELECT b.mode INTO v_mode FROM billing_budgets b WHERE b.account_id = p_account;
    IF v_mode IS NOT DISTINCT FROM 'hard' THEN
        RETURN NEXT;  -- the budget check needs billing.py's pricing: its path decides
        RETURN;
    END IF;
    IF terms_allowance IS NOT NULL AND NOT terms_overage AND v_used + v_reserved + p_cost > terms_allowance THEN
        RETURN NEXT;  -- would pass the quota: billing.admit_job refuses it (and emits limit_reached once)
        RETURN;
    END IF;
    admitted := true;
    RETURN NEXT;
END
$$;
