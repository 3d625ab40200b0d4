import { complianceSuite } from './support/suite.js';

// Loopback TCP with socketTuning 'off': the user-mode path (PING timing, default kernel buffers) that
// platforms without kernel socket access run.
complianceSuite('tcp-user');
