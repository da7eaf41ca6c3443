/*
 * The JSON shape of each registry record, shared by the admin API and the CLI's --json
 * (so both show the same fields). Never includes a secret: a key is shown by its prefix.
 */
#include "registry/registry.h"

json_t *reg_org_json(const struct reg_org *o)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:s?, s:i, s:s, s:s, s:s}", "id", (json_int_t)o->id,
                     "slug", o->slug, "name", o->name, "class", o->class_, "plan",
                     o->plan[0] ? o->plan : NULL, "anchor_day", o->anchor_day, "status",
                     o->status, "contact", o->contact, "created_at", o->created_at);
}

json_t *reg_plan_json(const struct reg_plan *p)
{
    return json_pack("{s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:i, s:s, s:b, s:s}", "id",
                     (json_int_t)p->id, "name", p->name, "requests_per_minute",
                     (json_int_t)p->requests_per_minute, "request_burst",
                     (json_int_t)p->request_burst, "bytes_per_second",
                     (json_int_t)p->bytes_per_second, "byte_burst", (json_int_t)p->byte_burst,
                     "monthly_bytes", (json_int_t)p->monthly_bytes, "max_concurrent",
                     (int)p->max_concurrent, "failure_policy", p->failure_policy, "shadow",
                     p->shadow, "created_at", p->created_at);
}

json_t *reg_key_json(const struct reg_key *k)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s?, s:s?, s:s?}", "id", (json_int_t)k->id,
                     "org", k->org_slug, "name", k->name, "prefix", k->display, "created_at",
                     k->created_at, "last_used_at", k->last_used_at[0] ? k->last_used_at : NULL,
                     "revoked_at", k->revoked_at[0] ? k->revoked_at : NULL, "expires_at",
                     k->expires_at[0] ? k->expires_at : NULL);
}

json_t *reg_network_json(const struct reg_network *n)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:I}", "id", (json_int_t)n->id, "org",
                     n->org_slug, "cidr", n->cidr, "note", n->note, "created_at", n->created_at,
                     "requests", (json_int_t)n->requests, "bytes", (json_int_t)n->bytes);
}
