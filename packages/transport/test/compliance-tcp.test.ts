import { complianceSuite } from './support/suite.js';

complianceSuite('tcp');
