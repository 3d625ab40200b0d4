import { complianceSuite } from './support/suite.js';

complianceSuite('memory');
