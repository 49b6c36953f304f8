"""validation: rules, notification templates, results and the conversations they became (issue 10)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 19:50:44

Each (rule, period, org unit, attribute option combo) is one row of validation_results, ever
(the unique constraint ingestion inserts against with ON CONFLICT DO NOTHING).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('validation_notification_templates',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('uid', sa.String(length=11), nullable=False),
    sa.Column('name', sa.String(length=230), nullable=False),
    sa.Column('subject_template', sa.Text(), nullable=True),
    sa.Column('message_template', sa.Text(), nullable=False),
    sa.Column('notify_users_in_hierarchy_only', sa.Boolean(), nullable=False),
    sa.Column('notify_parent_org_unit_only', sa.Boolean(), nullable=False),
    sa.Column('send_strategy', sa.String(length=32), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('last_updated', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_validation_notification_templates')),
    sa.UniqueConstraint('uid', name=op.f('uq_validation_notification_templates_uid'))
    )
    op.create_table('validation_rules',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('uid', sa.String(length=11), nullable=False),
    sa.Column('name', sa.String(length=230), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('instruction', sa.Text(), nullable=True),
    sa.Column('importance', sa.String(length=16), nullable=False),
    sa.Column('operator', sa.String(length=32), nullable=False),
    sa.Column('left_description', sa.Text(), nullable=True),
    sa.Column('left_expression', sa.Text(), nullable=False),
    sa.Column('right_description', sa.Text(), nullable=True),
    sa.Column('right_expression', sa.Text(), nullable=False),
    sa.Column('period_type', sa.String(length=40), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.Column('last_updated', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_validation_rules')),
    sa.UniqueConstraint('uid', name=op.f('uq_validation_rules_uid'))
    )
    op.create_table('validation_results',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rule_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('period', sa.String(length=20), nullable=False),
    sa.Column('org_unit_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('attribute_option_combo', sa.String(length=11), nullable=False),
    sa.Column('left_value', sa.Float(), nullable=True),
    sa.Column('right_value', sa.Float(), nullable=True),
    sa.Column('day_in_period', sa.Integer(), nullable=False),
    sa.Column('notification_sent', sa.Boolean(), nullable=False),
    sa.Column('created', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['org_unit_id'], ['org_units.id'], name=op.f('fk_validation_results_org_unit_id_org_units'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rule_id'], ['validation_rules.id'], name=op.f('fk_validation_results_rule_id_validation_rules'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_validation_results')),
    sa.UniqueConstraint('rule_id', 'period', 'org_unit_id', 'attribute_option_combo', name=op.f('uq_validation_results_rule_id_period_org_unit_id_attribute_option_combo'))
    )
    with op.batch_alter_table('validation_results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_validation_results_org_unit_id'), ['org_unit_id'], unique=False)
        batch_op.create_index('ix_validation_results_unsent', ['id'], unique=False, postgresql_where=sa.text('NOT notification_sent'), sqlite_where=sa.text('NOT notification_sent'))

    op.create_table('validation_template_groups',
    sa.Column('template_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('group_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['user_groups.id'], name=op.f('fk_validation_template_groups_group_id_user_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['template_id'], ['validation_notification_templates.id'], name=op.f('fk_validation_template_groups_template_id_validation_notification_templates'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('template_id', 'group_id', name=op.f('pk_validation_template_groups'))
    )
    op.create_table('validation_template_rules',
    sa.Column('template_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('rule_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['rule_id'], ['validation_rules.id'], name=op.f('fk_validation_template_rules_rule_id_validation_rules'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['template_id'], ['validation_notification_templates.id'], name=op.f('fk_validation_template_rules_template_id_validation_notification_templates'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('template_id', 'rule_id', name=op.f('pk_validation_template_rules'))
    )
    with op.batch_alter_table('validation_template_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_validation_template_rules_rule_id'), ['rule_id'], unique=False)

    op.create_table('validation_notifications',
    sa.Column('conversation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('batch', sa.String(length=11), nullable=False),
    sa.Column('part', sa.Integer(), nullable=False),
    sa.Column('result_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('template_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_validation_notifications_conversation_id_conversations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['result_id'], ['validation_results.id'], name=op.f('fk_validation_notifications_result_id_validation_results'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['template_id'], ['validation_notification_templates.id'], name=op.f('fk_validation_notifications_template_id_validation_notification_templates'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('conversation_id', name=op.f('pk_validation_notifications')),
    sa.UniqueConstraint('batch', 'part', name=op.f('uq_validation_notifications_batch_part')),
    sa.UniqueConstraint('result_id', 'template_id', name=op.f('uq_validation_notifications_result_id_template_id'))
    )


def downgrade() -> None:
    op.drop_table('validation_notifications')
    with op.batch_alter_table('validation_template_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_validation_template_rules_rule_id'))

    op.drop_table('validation_template_rules')
    op.drop_table('validation_template_groups')
    with op.batch_alter_table('validation_results', schema=None) as batch_op:
        batch_op.drop_index('ix_validation_results_unsent', postgresql_where=sa.text('NOT notification_sent'), sqlite_where=sa.text('NOT notification_sent'))
        batch_op.drop_index(batch_op.f('ix_validation_results_org_unit_id'))

    op.drop_table('validation_results')
    op.drop_table('validation_rules')
    op.drop_table('validation_notification_templates')
