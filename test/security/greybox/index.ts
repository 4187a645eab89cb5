/** Every route module's declarations, by the module's name (src/http/routes/index.ts; system.ts's are 'system'). */
import type { Declarations } from '../greybox-declare.ts';
import { access } from './access.ts';
import { alerts } from './alerts.ts';
import { audit } from './audit.ts';
import { availability } from './availability.ts';
import { backups } from './backups.ts';
import { currentSession } from './current-session.ts';
import { enrolment } from './enrolment.ts';
import { factors } from './factors.ts';
import { jobs } from './jobs.ts';
import { keys } from './keys.ts';
import { login } from './login.ts';
import { metrics } from './metrics.ts';
import { operatorTokens } from './operator-tokens.ts';
import { people } from './people.ts';
import { sessions } from './sessions.ts';
import { signin } from './signin.ts';
import { system } from './system.ts';
import { tenantRestores } from './tenant-restores.ts';
import { tenants } from './tenants.ts';
import { trust } from './trust.ts';
import { vault } from './vault.ts';

export const DECLARATIONS: Record<string, Declarations> = {
  vault,
  tenants,
  audit,
  keys,
  access,
  login,
  'current-session': currentSession,
  sessions,
  enrolment,
  factors,
  people,
  'operator-tokens': operatorTokens,
  signin,
  jobs,
  availability,
  trust,
  backups,
  'tenant-restores': tenantRestores,
  metrics,
  alerts,
  system,
};
